"""A generator of every kind of bad or odd file a real photo folder holds.

``make_messy_folder(root)`` writes class folders mixing good JPEGs with each kind and
returns what the dataset doctor must do with every file: ``expected_bad`` (path -> kind of
quarantine), ``expected_converted`` (path -> a word its conversion must mention) and
``good`` (the plain files used as they are).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import make_image


def _rgb(size=40, seed=0, label=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    img[(label * size) // 4:(label * size) // 4 + size // 4, :, label % 3] = 230
    return img


def _jpeg_bytes(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def make_messy_folder(root: Path, classes=("ant", "bee"), good_per_class: int = 6):
    """Returns (root, expected_bad, expected_converted, good)."""
    rng = np.random.default_rng(0)
    good, bad, conv = [], {}, {}
    for label, name in enumerate(classes):
        for i in range(good_per_class):
            p = root / name / f"{name}_{i}.jpg"
            make_image(p, label, rng)
            good.append(str(p))
    a, b = root / classes[0], root / classes[1]

    def put(path: Path, data: bytes, kind: str):
        path.write_bytes(data)
        bad[str(path)] = kind

    put(a / "zero.jpg", b"", "empty")
    put(a / "notes.txt", b"shopping list: film, batteries\n", "not_image")
    put(a / "fake.jpg", b"<html>404 not found</html>" * 10, "not_image")
    full = _jpeg_bytes(_rgb(64, 1))
    put(a / "truncated.jpg", full[: len(full) // 2], "truncated")
    put(b / "header_only.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not_image")
    png = io.BytesIO()
    Image.fromarray(_rgb(64, 12)).save(png, format="PNG")
    data = bytearray(png.getvalue())
    data[80:200] = bytes(range(120))  # garbles the compressed pixel data, header intact
    put(b / "garbled.png", bytes(data), "corrupt")
    put(a / ".DS_Store", b"\0\0\0\1Bud1" + b"\0" * 100, "system")
    put(b / "Thumbs.db", b"\xd0\xcf\x11\xe0" + b"\0" * 100, "system")
    tiny = io.BytesIO()
    Image.fromarray(_rgb(4, 2)).save(tiny, format="PNG")
    put(b / "tiny.png", tiny.getvalue(), "too_small")
    # an exact duplicate inside a class, and the same photo under the other class
    put(a / "ant_0_copy.jpg", (a / "ant_0.jpg").read_bytes(), "duplicate")
    put(b / "ant_1_again.jpg", (a / "ant_1.jpg").read_bytes(), "duplicate")

    def convert(path: Path, image: Image.Image, word: str, **save):
        image.save(path, **save)
        conv[str(path)] = word

    rgba = np.dstack([_rgb(40, 3, 0), np.full((40, 40), 128, np.uint8)])
    convert(a / "alpha.png", Image.fromarray(rgba, "RGBA"), "alpha")
    convert(a / "gray.jpg", Image.fromarray(_rgb(40, 4)[..., 0], "L"), "grayscale")
    convert(b / "cmyk.jpg", Image.fromarray(_rgb(40, 5, 1)).convert("CMYK"), "CMYK", format="JPEG")
    sixteen = (np.linspace(0, 65535, 40 * 40).reshape(40, 40)).astype(np.uint16)
    convert(b / "deep16.png", Image.fromarray(sixteen), "16-bit")
    convert(b / "palette.gif", Image.fromarray(_rgb(40, 6, 1)).convert("P"), "palette")
    frames = [Image.fromarray(_rgb(40, 7 + k, 1)).convert("P") for k in range(3)]
    frames[0].save(b / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    conv[str(b / "animated.gif")] = "animated"
    convert(a / "photo.webp", Image.fromarray(_rgb(40, 10)), "WEBP", format="WEBP")
    rotated = Image.fromarray(_rgb(48, 11)[:, :40])  # 40 wide, 48 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    convert(b / "rotated.jpg", rotated, "EXIF", format="JPEG", exif=exif.tobytes())
    return root, bad, conv, good
