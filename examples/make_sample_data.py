"""Generate the bundled sample dataset: 3 classes of drawn shapes (licence-clean).

    python examples/make_sample_data.py examples/sample_data

Each image is a random-coloured circle, square or triangle at a random position and size
on a noisy background, 96x96 JPEG. Seeded, so the output is the same every time.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def draw(shape: str, rng: random.Random, size: int = 96) -> Image.Image:
    bg = tuple(rng.randint(150, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    px = img.load()
    for _ in range(size * 4):  # speckle noise so images are not trivially identical
        px[rng.randrange(size), rng.randrange(size)] = tuple(rng.randint(0, 255) for _ in range(3))
    d = ImageDraw.Draw(img)
    r = rng.randint(size // 6, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    fill = tuple(rng.randint(0, 120) for _ in range(3))
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return img


def make(root: Path, train: int = 20, val: int = 8, seed: int = 0) -> None:
    rng = random.Random(seed)
    for split, n in (("train", train), ("val", val)):
        for shape in CLASSES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                draw(shape, rng).save(folder / f"{shape}_{i:03d}.jpg", quality=85)


if __name__ == "__main__":
    make(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/sample_data"))
