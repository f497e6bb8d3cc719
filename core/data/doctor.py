"""The dataset doctor: look at every file of a folder-per-class dataset before training.

It uses Pillow to open each file completely (a truncated JPEG only fails when its last
bytes are decoded) and decides, per file, one of three things:

- **use** it as it is (8-bit RGB JPEG/PNG/BMP without EXIF rotation: tf.data decodes it);
- **convert** it: Pillow reads it but tf.io.decode_image would not, or would get it wrong
  (alpha, grayscale, CMYK, 16-bit, palette, animated, EXIF rotation, WebP/TIFF). A normalised
  8-bit RGB PNG is written once into a content-addressed cache (``$CLF_CACHE_DIR/converted``,
  default ``~/.cache/clf/converted``) and training reads that copy. Why a cached copy and not
  a ``tf.py_function`` decode path: the training pipeline stays pure TensorFlow (parallel,
  deterministic, no GIL, no Python in the graph), the conversion is paid once per file and
  not once per epoch, and the copy can be looked at when a result looks wrong;
- **quarantine** it: empty, unreadable, not an image, truncated or corrupt, too small, too
  large (decompression bomb), an exact duplicate, or a validation/test copy of a training
  image (leakage). Quarantined files are listed with their reason in the run folder
  (``quarantine.json``) and left out; with ``strict`` any of them is an error.

System files (``.DS_Store``, ``Thumbs.db``, hidden files) are listed as ``system`` and never
make a strict run fail.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clf.data.images import is_class_folder
from clf.errors import DataError

# Suffixes of files Pillow can read that the doctor turns into training images.
IMAGE_LIKE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp",
                                 ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".ico"})
SYSTEM_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
TF_FORMATS = frozenset({"JPEG", "PNG", "BMP"})  # formats tf.io.decode_image reads as-is
TF_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})  # what the loader picks
MIN_SIDE = 16  # smaller images (icons, tracking pixels) carry no usable content
IMBALANCE_WARN = 3.0  # largest / smallest class above this gets a note
QUARANTINE_FILE = "quarantine.json"

# Kinds of quarantined files; "system" is the one that --strict-data tolerates.
KINDS = ("system", "unreadable", "empty", "not_image", "truncated", "corrupt", "too_small",
         "too_large", "duplicate", "leak")


@dataclass
class BadFile:
    path: str
    split: str
    class_name: str
    kind: str
    reason: str


@dataclass
class Conversion:
    path: str
    split: str
    class_name: str
    changes: list[str]
    copy: str | None = None  # the converted file, once written


@dataclass
class DoctorReport:
    root: str
    layout: dict[str, str]
    class_names: list[str]
    counts: dict[str, dict[str, int]]  # usable images per split and class
    quarantined: list[BadFile] = field(default_factory=list)
    converted: list[Conversion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bad(self) -> list[BadFile]:
        """Quarantined files other than system files: what --strict-data refuses."""
        return [b for b in self.quarantined if b.kind != "system"]

    @property
    def skip(self) -> frozenset[str]:
        return frozenset(b.path for b in self.quarantined)

    @property
    def substitute(self) -> dict[str, str]:
        """File -> the file to read instead (converted copy; or itself for an odd suffix)."""
        return {c.path: c.copy for c in self.converted if c.copy}

    def imbalance(self, split: str = "train") -> float | None:
        counts = [n for n in self.counts.get(split, {}).values()]
        if not counts or min(counts) == 0:
            return None
        return max(counts) / min(counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "clf-quarantine/1",
            "root": self.root,
            "layout": self.layout,
            "class_names": self.class_names,
            "counts": self.counts,
            "imbalance": self.imbalance(),
            "quarantined": [asdict(b) for b in self.quarantined],
            "converted": [asdict(c) for c in self.converted],
            "notes": self.notes,
        }

    def write(self, run_dir: Path) -> Path:
        """``quarantine.json`` in the run folder (atomic): every file left out, and why."""
        from clf.files import write_json

        return write_json(Path(run_dir) / QUARANTINE_FILE, self.to_dict())

    def strict_check(self) -> None:
        bad = self.bad
        if not bad:
            return
        shown = "; ".join(f"{b.path}: {b.reason}" for b in bad[:10])
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise DataError(
            f"--strict-data: {len(bad)} bad file(s) in {self.root!r}: {shown}{more}. Expected "
            f"every file in the class folders to be a usable image. Fix or remove them (run "
            f"'clf doctor {self.root}' for the full list), or drop --strict-data to quarantine "
            f"them and train on the rest."
        )


def cache_dir() -> Path:
    base = os.environ.get("CLF_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "clf")
    return Path(base) / "converted"


@dataclass
class _Look:
    """What inspecting one file found."""

    path: Path
    sha: str | None = None
    kind: str | None = None  # a quarantine kind, or None when usable
    reason: str = ""
    changes: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None


def _png_bit_depth(data: bytes) -> int:
    # IHDR is the first chunk: 8-byte signature, 4 length, 4 type, 4 width, 4 height, 1 depth.
    return data[24] if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 else 8


def inspect_file(path: Path, min_side: int = MIN_SIDE) -> _Look:
    """Open one file completely with Pillow; say whether it is usable, convertible or bad."""
    from PIL import Image, UnidentifiedImageError

    look = _Look(path)
    name = path.name.lower()
    if name in SYSTEM_NAMES or name.startswith("."):
        look.kind, look.reason = "system", "system or hidden file, not an image"
        return look
    try:
        data = path.read_bytes()
    except OSError as exc:
        look.kind, look.reason = "unreadable", f"cannot be read: {exc.strerror or exc}"
        return look
    if not data:
        look.kind, look.reason = "empty", "empty file (0 bytes)"
        return look
    look.sha = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, look.size = im.format, im.mode, im.size
            frames = getattr(im, "n_frames", 1)
            orientation = im.getexif().get(0x0112, 1)
            if min(im.size) < min_side:
                look.kind = "too_small"
                look.reason = f"too small: {im.size[0]}x{im.size[1]} px, expected at least {min_side} px a side"
                return look
            im.load()  # decodes everything: this is what finds truncated files
    except Image.DecompressionBombError as exc:
        look.kind, look.reason = "too_large", f"too large to decode safely: {exc}"
        return look
    except UnidentifiedImageError:
        what = "not an image" if path.suffix.lower() not in IMAGE_LIKE_SUFFIXES else \
            f"not a readable image despite its {path.suffix} suffix"
        look.kind, look.reason = "not_image", f"{what} ({len(data)} bytes, format unknown to Pillow)"
        return look
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text.lower():
            look.kind, look.reason = "truncated", f"truncated file: {text}"
        else:
            look.kind, look.reason = "corrupt", f"corrupt {fmt or 'image'} data: {text or type(exc).__name__}"
        return look

    if frames > 1:
        look.changes.append(f"animated ({frames} frames): first frame")
    if orientation not in (1, None):
        look.changes.append(f"EXIF orientation {orientation} applied")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        look.changes.append(f"alpha ({mode}) flattened onto white")
    elif mode == "P":
        look.changes.append("palette -> RGB")
    elif mode in ("L", "1"):
        look.changes.append("grayscale -> RGB")
    elif mode == "CMYK":
        look.changes.append("CMYK -> RGB")
    elif mode.startswith("I") or mode == "F":
        look.changes.append(f"16-bit ({mode}) -> 8-bit RGB")
    elif mode != "RGB":
        look.changes.append(f"{mode} -> RGB")
    if fmt == "PNG" and _png_bit_depth(data) == 16 and not any("16-bit" in c for c in look.changes):
        look.changes.append("16-bit -> 8-bit RGB")
    if fmt not in TF_FORMATS:
        look.changes.append(f"{fmt} -> PNG")
    if not look.changes and path.suffix.lower() not in TF_SUFFIXES:
        look.changes.append(f"{fmt} file with suffix {path.suffix or '(none)'} -> PNG")
    return look


def normalise(data: bytes):
    """8-bit RGB Pillow image: first frame, EXIF rotation applied, alpha on white, 16-bit scaled."""
    import numpy as np
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(data))
    im.seek(0)
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.max(initial=0) > 255:
            arr = arr / 257.0  # 16-bit 0..65535 -> 0..255
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def convert_file(path: Path, sha: str, target_dir: Path) -> Path:
    """Write the normalised copy once (content-addressed, atomic) and return its path."""
    from clf.files import atomic_path

    target = target_dir / f"{sha}.png"
    if target.is_file() and target.stat().st_size > 0:
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    image = normalise(Path(path).read_bytes())
    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG")
    return target


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = sorted((p for p in folder.iterdir() if is_class_folder(p)),
                     key=lambda p: p.name)
    return {c.name: sorted(p for p in c.rglob("*") if p.is_file() or p.is_symlink()) for c in classes}


def examine(source, *, min_side: int = MIN_SIDE, convert: bool = True, workers: int | None = None,
            target_dir: Path | None = None) -> DoctorReport:
    """Look at every file of a folder-per-class dataset; with ``convert`` write the copies."""
    from clf.plugins.directory_loader import check_data_root, find_layout

    root = Path(source)
    check_data_root(root, source)
    layout = find_layout(root)
    per_split = {split: _class_files(folder) for split, folder in layout.items()}
    class_names = sorted(per_split["train"])
    jobs = [(split, cls, f) for split, classes in per_split.items() for cls, files in classes.items() for f in files]
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        looks = list(pool.map(lambda job: inspect_file(job[2], min_side), jobs))

    report = DoctorReport(str(root), {k: str(v) for k, v in layout.items()}, class_names, {})
    first: dict[str, tuple[str, str, Path]] = {}  # sha -> where it was first seen
    usable: list[tuple[str, str, _Look]] = []
    for (split, cls, f), look in zip(jobs, looks):
        if look.kind is None and look.sha in first:
            f_split, f_cls, f_path = first[look.sha]
            if f_split != split:
                look.kind = "leak"
                look.reason = (f"same bytes as {f_split} file {f_path} (class {f_cls!r}): an image in "
                               f"both {f_split} and {split} inflates {split} scores; left out of {split}")
            elif f_cls != cls:
                look.kind = "duplicate"
                look.reason = (f"same bytes as {f_path} in class {f_cls!r}: one photo with two labels; "
                               f"kept only the first")
            else:
                look.kind, look.reason = "duplicate", f"exact duplicate of {f_path}"
        if look.kind is not None:
            report.quarantined.append(BadFile(str(f), split, cls, look.kind, look.reason))
            continue
        first[look.sha] = (split, cls, f)
        usable.append((split, cls, look))

    for split, cls, look in usable:
        report.counts.setdefault(split, {n: 0 for n in sorted(per_split[split])})
        report.counts[split][cls] = report.counts[split].get(cls, 0) + 1
        if look.changes:
            conv = Conversion(str(look.path), split, cls, look.changes)
            if convert:
                try:
                    conv.copy = str(convert_file(look.path, look.sha, target_dir or cache_dir()))
                except Exception as exc:  # a file Pillow read but cannot convert: quarantine it
                    report.quarantined.append(BadFile(str(look.path), split, cls, "corrupt",
                                                      f"could not be converted: {type(exc).__name__}: {exc}"))
                    report.counts[split][cls] -= 1
                    continue
            report.converted.append(conv)
    for split, classes in per_split.items():
        report.counts.setdefault(split, {n: 0 for n in sorted(classes)})
    _add_notes(report)
    return report


def _add_notes(report: DoctorReport) -> None:
    ratio = report.imbalance()
    train = report.counts.get("train", {})
    if ratio is not None and ratio > IMBALANCE_WARN:
        big, small = max(train, key=train.get), min(train, key=train.get)
        report.notes.append(
            f"classes are imbalanced: {big!r} has {train[big]} training images, {small!r} "
            f"{train[small]} ({ratio:.1f}x); accuracy will favour the large classes. Add images "
            f"to the small ones or report per-class metrics.")
    for split, counts in report.counts.items():
        if split == "train":
            continue
        missing = [c for c in report.class_names if counts.get(c, 0) == 0]
        if missing:
            report.notes.append(f"{split} has no usable images of class(es) {', '.join(missing)}: "
                                f"they are not measured there.")


def check_usable(report: DoctorReport) -> None:
    """A class left with no usable training image is an error naming what was quarantined."""
    train = report.counts.get("train", {})
    for cls, n in train.items():
        if n == 0:
            bad = [b for b in report.quarantined if b.split == "train" and b.class_name == cls]
            shown = "; ".join(f"{Path(b.path).name}: {b.reason}" for b in bad[:5]) or "the folder is empty"
            raise DataError(
                f"Class {cls!r} has no usable training images ({len(bad)} file(s) quarantined: "
                f"{shown}). Expected at least one readable image per class. Add images to "
                f"{report.layout['train']}/{cls} or remove that class folder."
            )


def preflight(config, loader, observer) -> DoctorReport | None:
    """Run before loading: examine a local data folder, convert, report, and in strict mode
    refuse bad files. ``None`` when the data is not a local folder (a loader streaming from
    elsewhere) or the loader cannot take the doctor's file lists."""
    import inspect

    if not Path(config.data).is_dir():
        return None  # the loader reports a missing folder in its own words
    params = inspect.signature(loader.load).parameters
    if not ({"skip", "substitute"} <= set(params) or any(p.kind == p.VAR_KEYWORD for p in params.values())):
        observer.note(f"Loader {loader.name!r} does not accept the dataset doctor's file lists; "
                      f"bad files are not quarantined for it.")
        return None
    observer.phase_start("doctor")
    report = examine(config.data)
    if getattr(config, "strict_data", False):
        report.strict_check()
    check_usable(report)
    for note in report.notes:
        observer.note(note)
    observer.phase_end("doctor", report=report)
    return report


def loader_options(report: DoctorReport | None) -> dict[str, Any]:
    if report is None:
        return {}
    return {"skip": report.skip, "substitute": report.substitute}
