"""The dataset doctor: Pillow decodes every file of a folder-per-class dataset completely before
training (a truncated JPEG fails only at its last bytes) and decides, per file:

- **use** it (8-bit RGB JPEG/PNG/BMP without EXIF rotation: tf.data decodes it);
- **convert** it (what tf.io.decode_image misreads: alpha, grayscale, CMYK, 16-bit, palette,
  animation, EXIF rotation, WebP/TIFF) into an 8-bit RGB PNG in a content-addressed cache
  (``converted/`` under ``clf.files.cache_root``). A copy rather than a ``tf.py_function``
  keeps the pipeline pure TensorFlow, converts once rather than every epoch, and can be inspected;
- **quarantine** it (``KINDS``; over ``clf.data.filecheck``'s limits: never read), listed with
  its reason in ``quarantine.json``; with ``strict`` any but ``system`` files is an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TYPE_CHECKING

from clf.data.images import IMAGE_SUFFIXES
from clf.data.layout import check_data_root, class_folders, find_layout
from clf.data.filecheck import FileProblem, bomb_problem, check_pixels, display_path, read_file
from clf.errors import DataError
from clf.files import atomic_path, cache_dir, remember_sha256, write_json

if TYPE_CHECKING:
    from PIL import Image
    from clf.config import RunConfig
    from clf.events import Observer

# suffixes the loader takes as they are, plus those it takes once converted
IMAGE_LIKE_SUFFIXES = IMAGE_SUFFIXES | frozenset({".jpe", ".jfif", ".webp", ".tif", ".tiff", ".ppm",
                                                  ".pgm", ".pbm", ".ico"})
SYSTEM_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
TF_FORMATS = frozenset({"JPEG", "PNG", "BMP"})  # formats tf.io.decode_image reads as-is
# a Pillow mode -> the change converting it to RGB, where it is not "MODE -> RGB"
_MODE_CHANGES = {"P": "palette -> RGB", "L": "grayscale -> RGB", "1": "grayscale -> RGB"}
MIN_SIDE = 16  # smaller images (icons, tracking pixels) carry no usable content
# largest/smallest class ratio that is noted and balanced by --class-weight auto (clf.train.class_weights)
IMBALANCE_RATIO = 3.0
CONVERTED_CACHE = "converted"
QUARANTINE_FILE = "quarantine.json"

# "system" is the one kind --strict-data tolerates
KINDS = ("system", "not_regular", "unreadable", "empty", "not_image", "truncated", "corrupt", "too_small",
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
    copy: str | None = None


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
        counts = list(self.counts.get(split, {}).values())
        if not counts or min(counts) == 0:
            return None
        return max(counts) / min(counts)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "clf-quarantine/1", **asdict(self), "imbalance": self.imbalance()}

    def write(self, run_dir: Path) -> Path:
        """``quarantine.json`` in the run folder (atomic): every file left out, and why."""
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


def facts_path() -> Path:
    """Where Pillow's facts about files are cached."""
    return cache_dir("doctor") / "facts.json"


@dataclass
class _Look:
    """What inspecting one file found."""

    path: Path
    sha: str | None = None
    kind: str | None = None  # a quarantine kind, or None when usable
    reason: str = ""
    changes: list[str] = field(default_factory=list)


def pillow_facts(data: bytes) -> dict[str, Any]:
    """What Pillow finds decoding a file's bytes completely: format, mode, size, frames, EXIF
    orientation, transparency, PNG bit depth; or ``error`` (``too_large``, ``unidentified``,
    ``decode``) and its ``text``. Depends on the bytes alone, so ``FactsCache`` keys it by hash."""
    from PIL import Image, UnidentifiedImageError

    facts: dict[str, Any] = {}
    try:
        with Image.open(io.BytesIO(data)) as im:
            facts.update(format=im.format, mode=im.mode, size=list(im.size), frames=getattr(im, "n_frames", 1),
                         orientation=im.getexif().get(0x0112, 1))
            check_pixels(*im.size)  # the limit predict and evaluate apply too, before decoding
            im.load()  # what finds truncated files
            facts["transparency"] = "transparency" in im.info
    except Image.DecompressionBombError as exc:
        facts.update(error="too_large", text=bomb_problem(exc).reason)
    except FileProblem as problem:
        facts.update(error="too_large", text=problem.reason)
    except UnidentifiedImageError:
        facts.update(error="unidentified", text="")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        facts.update(error="decode", text=str(exc) or type(exc).__name__)
    # PNG's IHDR comes first: signature 8, length 4, type 4, width 4, height 4, then depth
    facts["bit_depth"] = data[24] if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 else 8
    return facts


class FactsCache:
    """Pillow's facts per content hash, across runs, so a warm run decodes nothing (see
    benchmarks/overhead.py). Keyed by Pillow's version, which the facts depend on."""

    def __init__(self, path: Path | None) -> None:
        from PIL import __version__ as pillow

        self.path, self.version = path, f"pillow-{pillow}/2"
        self.new: dict[str, dict[str, Any]] = {}
        self.known: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):  # unreadable: start afresh
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") == self.version:
                    self.known = data.get("facts", {})

    def facts(self, sha: str, data: bytes) -> dict[str, Any]:
        found = self.known.get(sha) or self.new.get(sha)
        if found is None:
            found = self.new[sha] = pillow_facts(data)
        return found

    def save(self) -> None:
        if self.path is None or not self.new:
            return
        with contextlib.suppress(OSError):  # read-only cache: the next run just decodes again
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {"version": self.version, "facts": {**self.known, **self.new}})


def inspect_file(path: Path, min_side: int = MIN_SIDE, facts: FactsCache | None = None) -> _Look:
    """Whether one file is usable, convertible or bad (Pillow's findings from ``facts`` when known)."""
    name = path.name.lower()
    if name in SYSTEM_NAMES or name.startswith("."):
        return _Look(path, kind="system", reason="system or hidden file, not an image")
    try:
        stat = path.stat()  # before reading: a file changed since is hashed again later
    except OSError:
        stat = None  # read_file reports it
    try:
        data = read_file(path)  # regular files within the byte limit only: no FIFO, no /dev/zero
    except FileProblem as problem:
        return _Look(path, kind=problem.kind, reason=problem.reason)
    if not data:
        return _Look(path, kind="empty", reason="empty file (0 bytes)")
    sha = hashlib.sha256(data).hexdigest()
    look = _Look(path, sha)
    if stat is not None:
        remember_sha256(path, sha, stat)  # spares the feature cache and run record a re-read
    found = facts.facts(sha, data) if facts is not None else pillow_facts(data)
    fmt, mode = found.get("format"), found.get("mode")
    if "size" in found and min(found["size"]) < min_side:
        width, height = found["size"]
        look.kind = "too_small"
        look.reason = f"too small: {width}x{height} px, expected at least {min_side} px a side"
        return look
    error, text = found.get("error"), found.get("text", "")
    if error == "unidentified":
        what = "not an image" if path.suffix.lower() not in IMAGE_LIKE_SUFFIXES else \
            f"not a readable image despite its {path.suffix} suffix"
        look.kind, look.reason = "not_image", f"{what} ({len(data)} bytes, format unknown to Pillow)"
    elif error == "decode" and "truncated" in text.lower():
        look.kind, look.reason = "truncated", f"truncated file: {text}"
    elif error == "decode":
        look.kind, look.reason = "corrupt", f"corrupt {fmt or 'image'} data: {text}"
    elif error == "too_large":
        look.kind, look.reason = "too_large", text
    if error:
        return look

    frames, orientation = found["frames"], found["orientation"]
    if frames > 1:
        look.changes.append(f"animated ({frames} frames): first frame")
    if orientation not in (1, None):
        look.changes.append(f"EXIF orientation {orientation} applied")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and found.get("transparency")):
        look.changes.append(f"alpha ({mode}) flattened onto white")
    elif isinstance(mode, str) and mode.startswith("I") or mode == "F":
        look.changes.append(f"16-bit ({mode}) -> 8-bit RGB")
    elif mode != "RGB":
        look.changes.append(_MODE_CHANGES.get(str(mode), f"{mode} -> RGB"))
    if fmt == "PNG" and found["bit_depth"] == 16 and not any("16-bit" in c for c in look.changes):
        look.changes.append("16-bit -> 8-bit RGB")
    if fmt not in TF_FORMATS:
        look.changes.append(f"{fmt} -> PNG")
    if not look.changes and path.suffix.lower() not in IMAGE_SUFFIXES:
        look.changes.append(f"{fmt} file with suffix {path.suffix or '(none)'} -> PNG")
    return look


def normalise(data: bytes) -> Image.Image:
    """8-bit RGB Pillow image: first frame, EXIF rotation applied, alpha on white, 16-bit scaled."""
    import numpy as np
    from PIL import Image, ImageOps

    im: Image.Image = Image.open(io.BytesIO(data))
    im.seek(0)
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.max(initial=0) > 255:
            arr = arr / 257.0  # 16-bit 0..65535 -> 0..255
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if im.mode in ("LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def convert_file(path: Path, sha: str, target_dir: Path) -> Path:
    """Write the normalised copy once (content-addressed, atomic) and return its path."""
    target = target_dir / f"{sha}.png"
    if target.is_file() and target.stat().st_size > 0:
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    image = normalise(read_file(path))
    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG")
    return target


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = class_folders(folder)
    # a class name goes into labels.json and every report: it must be text (UTF-8), which
    # display_path leaves as it is
    bad = [c.name for c in classes if display_path(c.name) != c.name]
    if bad:
        raise DataError(
            f"Class folder name(s) {', '.join(display_path(n) for n in bad)} in {display_path(folder)!r} "
            f"are not valid UTF-8 (bytes from another encoding); expected text, since class names "
            f"are saved with the model. Rename the folder(s)."
        )
    # links and FIFOs included, so each is used or listed with its reason
    return {c.name: sorted(p for p in c.rglob("*") if p.is_symlink() or not p.is_dir()) for c in classes}


# copy names from file managers and browsers: "x(1).jpg", "x - Copy.jpg", "x copy 2.jpg", "Copy of x.jpg"
_COPY_MARKER = re.compile(r"(\s*\(\d+\)|[\s_-]+copy(\s*\d+|\s*\(\d+\))?)$|^copy of ", re.IGNORECASE)


def plainest_first(path: Path) -> tuple[bool, int, str]:
    """Sort key of duplicates, the one to keep first: no copy marker, shortest, then by name."""
    name = Path(path).name
    return bool(_COPY_MARKER.search(Path(path).stem)), len(name), name


def examine(source: str | Path, *, min_side: int = MIN_SIDE, convert: bool = True, workers: int | None = None,
            target_dir: Path | None = None, facts_file: Path | None | bool = True) -> DoctorReport:
    """Look at every file of a folder-per-class dataset; with ``convert`` write the copies
    (into ``target_dir``, default clf's cache). ``facts_file``: Pillow's findings cache
    (True: ``facts_path()``; a path; None/False: none)."""
    root = Path(source)
    check_data_root(root, source)
    layout = find_layout(root)
    per_split = {split: _class_files(folder) for split, folder in layout.items()}
    class_names = sorted(per_split["train"])
    # plainest name first, so it is the copy kept
    jobs = [(split, cls, f) for split, classes in per_split.items() for cls, files in classes.items()
            for f in sorted(files, key=plainest_first)]
    counts = {split: {n: 0 for n in sorted(classes)} for split, classes in per_split.items()}
    report = DoctorReport(str(root), {k: str(v) for k, v in layout.items()}, class_names, counts)
    return _examine_jobs(report, jobs, min_side=min_side, convert=convert, workers=workers, target_dir=target_dir,
                         facts_file=facts_file)


def examine_labels_file(source: str | Path, *, min_side: int = MIN_SIDE, convert: bool = True,
                        workers: int | None = None, target_dir: Path | None = None,
                        facts_file: Path | None | bool = True) -> DoctorReport:
    """``examine`` for a labels file (clf.data.labels_file): its rows' files, counted per label
    (a row's "class" in the report is its labels joined by ';'); rows without a split count as train."""
    from clf.data.labels_file import SEPARATOR, read_labels_file

    rows = read_labels_file(source)
    names = sorted({label for r in rows for label in r.labels})
    splits = sorted({r.split or "train" for r in rows}, key=["train", "validation", "test"].index)
    counts = {split: {n: 0 for n in names} for split in splits}
    report = DoctorReport(str(source), {split: str(Path(source).parent) for split in splits}, names, counts)
    jobs = [(r.split or "train", SEPARATOR.join(r.labels), r.path) for r in rows]
    return _examine_jobs(report, jobs, min_side=min_side, convert=convert, workers=workers, target_dir=target_dir,
                         facts_file=facts_file, labels_of=lambda text: text.split(SEPARATOR) if text else [])


def _examine_jobs(report: DoctorReport, jobs: list[tuple[str, str, Path]], *, min_side: int, convert: bool,
                  workers: int | None, target_dir: Path | None, facts_file: Path | None | bool,
                  labels_of: Callable[[str], list[str]] = lambda cls: [cls]) -> DoctorReport:
    """Look at each ``(split, class, file)`` job, counting usable files in ``report.counts``
    under ``labels_of(class)``."""
    counts = report.counts
    facts = FactsCache(facts_path() if facts_file is True else (facts_file or None))
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        looks = list(pool.map(lambda job: inspect_file(job[2], min_side, facts), jobs))
    facts.save()

    first: dict[str, tuple[str, str, Path]] = {}  # sha -> where it was first seen
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
        assert look.sha is not None
        first[look.sha] = (split, cls, f)
        for name in labels_of(cls):
            counts[split][name] += 1
        if look.changes:
            conv = Conversion(str(look.path), split, cls, look.changes)
            if convert:
                try:
                    conv.copy = str(convert_file(look.path, look.sha, target_dir or cache_dir(CONVERTED_CACHE)))
                except Exception as exc:  # a file Pillow read but cannot convert: quarantine it
                    report.quarantined.append(BadFile(str(look.path), split, cls, "corrupt",
                                                      f"could not be converted: {type(exc).__name__}: {exc}"))
                    for name in labels_of(cls):
                        counts[split][name] -= 1
                    continue
            report.converted.append(conv)
    _add_notes(report)
    return report


IMBALANCED = "classes are imbalanced"  # the imbalance note's start


def _add_notes(report: DoctorReport) -> None:
    ratio = report.imbalance()
    train = report.counts.get("train", {})
    if ratio is not None and ratio > IMBALANCE_RATIO:
        big, small = max(train, key=train.__getitem__), min(train, key=train.__getitem__)
        report.notes.append(
            f"{IMBALANCED}: {big!r} has {train[big]} training images, {small!r} "
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


# loader: a clf.host.registry.DataLoader (data imports no host, so Any here)
def preflight(config: RunConfig, loader: Any, observer: Observer) -> DoctorReport | None:
    """Before loading: examine and convert a local data folder, and in strict mode refuse bad
    files. ``None`` when the data is not a local folder or the loader cannot take file lists."""
    import inspect

    from clf.data.labels_file import is_labels_file

    # Only for the labels-file loader: a plugin's loader may read its own .csv (its own format).
    labels_file = loader.name == "labels_file" and is_labels_file(config.data) and Path(config.data).is_file()
    if not Path(config.data).is_dir() and not labels_file:
        return None  # the loader reports it
    params = inspect.signature(loader.load).parameters
    if not ({"skip", "substitute"} <= set(params) or any(p.kind == p.VAR_KEYWORD for p in params.values())):
        observer.note(f"Loader {loader.name!r} does not accept the dataset doctor's file lists; "
                      f"bad files are not quarantined for it.")
        return None
    observer.phase_start("doctor")
    # --no-cache keeps no findings on disk either
    report = (examine_labels_file if labels_file else examine)(config.data, facts_file=config.cache)
    if config.strict_data:
        report.strict_check()
    check_usable(report)
    for note in report.notes:
        if note.startswith(IMBALANCED) and config.class_weight == "auto":
            # fit says nothing more about it
            note += (f" --class-weight auto balances the class weights when the training split is over "
                     f"{IMBALANCE_RATIO:g}x; --class-weight none turns this off.")
        observer.note(note)
    observer.phase_end("doctor", report=report)
    return report
