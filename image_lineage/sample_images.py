"""Draw the bundled cat/dog sample (``image_dataset/``) deterministically.

The project ships no third-party pictures: these cartoon faces are drawn from a seed, so anyone can
regenerate the folder with ``python -m image_lineage.sample_images image_dataset``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 128
# version -> class -> file -> seed; v2/cat/cat_01.jpg is the same picture as v1's (seed 1),
# so the v1 -> v2 diff shows one unchanged, one removed and two added images.
SAMPLE_LAYOUT = {
    "v1": {"cat": {"cat_01.jpg": 1, "cat_02.jpg": 2}},
    "v2": {"cat": {"cat_01.jpg": 1}, "dog": {"dog_01.jpg": 11, "dog_02.jpg": 12}},
}


def draw_cat(seed: int, size: int = SIZE) -> Image.Image:
    rng = random.Random(seed)
    fur = tuple(rng.randint(90, 230) for _ in range(3))
    image = Image.new("RGB", (size, size), background(rng))
    draw = ImageDraw.Draw(image)
    s = size / 128
    # pointed ears first, then the round head over their base
    draw.polygon([(30 * s, 50 * s), (42 * s, 12 * s), (60 * s, 42 * s)], fill=fur)
    draw.polygon([(98 * s, 50 * s), (86 * s, 12 * s), (68 * s, 42 * s)], fill=fur)
    draw.ellipse([24 * s, 30 * s, 104 * s, 110 * s], fill=fur)
    draw_face(draw, s, rng, eye_fill=(90, 170, 60))
    for dy in (-4, 0, 4):  # whiskers
        draw.line([(40 * s, (84 + dy) * s), (58 * s, 82 * s)], fill=(30, 30, 30), width=1)
        draw.line([(88 * s, (84 + dy) * s), (70 * s, 82 * s)], fill=(30, 30, 30), width=1)
    return image


def draw_dog(seed: int, size: int = SIZE) -> Image.Image:
    rng = random.Random(seed)
    fur = tuple(rng.randint(80, 200) for _ in range(3))
    ear = tuple(max(0, c - 50) for c in fur)
    image = Image.new("RGB", (size, size), background(rng))
    draw = ImageDraw.Draw(image)
    s = size / 128
    draw.ellipse([26 * s, 26 * s, 102 * s, 112 * s], fill=fur)
    # floppy ears hang beside the head
    draw.ellipse([10 * s, 30 * s, 38 * s, 90 * s], fill=ear)
    draw.ellipse([90 * s, 30 * s, 118 * s, 90 * s], fill=ear)
    draw.ellipse([48 * s, 78 * s, 80 * s, 104 * s], fill=(235, 220, 200))  # muzzle
    draw_face(draw, s, rng, eye_fill=(60, 40, 20))
    draw.ellipse([60 * s, 96 * s, 68 * s, 108 * s], fill=(220, 80, 90))  # tongue
    return image


def background(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(200, 255) for _ in range(3))


def draw_face(draw: ImageDraw.ImageDraw, s: float, rng: random.Random, eye_fill: tuple) -> None:
    offset = rng.randint(-3, 3)
    for x in (48, 80):
        draw.ellipse([(x - 7 + offset) * s, 58 * s, (x + 7 + offset) * s, 72 * s], fill=eye_fill)
        draw.ellipse([(x - 2 + offset) * s, 61 * s, (x + 2 + offset) * s, 69 * s], fill=(0, 0, 0))
    draw.polygon([(58 * s, 80 * s), (70 * s, 80 * s), (64 * s, 88 * s)], fill=(40, 20, 20))


DRAWERS = {"cat": draw_cat, "dog": draw_dog}


def write_sample_dataset(root: str | Path) -> list[Path]:
    """Write ``root/<version>/<class>/<file>`` for the bundled layout; return the written paths."""
    written = []
    for version, classes in SAMPLE_LAYOUT.items():
        for label, files in classes.items():
            folder = Path(root) / version / label
            folder.mkdir(parents=True, exist_ok=True)
            for name, seed in files.items():
                path = folder / name
                DRAWERS[label](seed).save(path, format="JPEG", quality=90)
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw the cat/dog sample images into a folder.")
    parser.add_argument("root", nargs="?", default="image_dataset", help="target folder (default: image_dataset)")
    args = parser.parse_args(argv)
    for path in write_sample_dataset(args.root):
        print(path)


if __name__ == "__main__":
    main()
