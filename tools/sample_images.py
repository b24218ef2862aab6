"""Draw the bundled samples deterministically: cat/dog folders and a small COCO detection set.

The project ships no third-party pictures: cartoon faces and coloured shapes are drawn from a seed, so
anyone can regenerate them with ``python -m tools.sample_images image_dataset`` and
``python -m tools.sample_images --coco coco/sample``.
"""

from __future__ import annotations

import argparse
import json
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


# COCO sample: non-contiguous category ids, as in real COCO, so the label mapping is exercised.
COCO_CATEGORIES = [{"id": 1, "name": "circle", "supercategory": "shape"},
                   {"id": 3, "name": "square", "supercategory": "shape"},
                   {"id": 7, "name": "triangle", "supercategory": "shape"}]
COCO_SPLITS = {"train2017": (12, 100), "val2017": (4, 500)}  # name -> (images, first image id)
COCO_SIZE = (160, 120)


def draw_shapes(seed: int) -> tuple[Image.Image, list[dict]]:
    """A picture of 1-3 non-overlapping shapes and their annotations (bbox xywh, area, category)."""
    rng = random.Random(seed)
    width, height = COCO_SIZE
    image = Image.new("RGB", COCO_SIZE, background(rng))
    draw = ImageDraw.Draw(image)
    shapes = []
    for slot in range(rng.randint(1, 3)):
        category = rng.choice(COCO_CATEGORIES)
        size = rng.randint(24, 44)
        x = slot * (width // 3) + rng.randint(2, width // 3 - size - 2)
        y = rng.randint(2, height - size - 2)
        color = tuple(rng.randint(0, 150) for _ in range(3))
        if category["name"] == "circle":
            draw.ellipse([x, y, x + size - 1, y + size - 1], fill=color)
            area = 3.14159 * (size / 2) ** 2
        elif category["name"] == "square":
            draw.rectangle([x, y, x + size - 1, y + size - 1], fill=color)
            area = float(size * size)
        else:
            draw.polygon([(x, y + size - 1), (x + size - 1, y + size - 1), (x + size // 2, y)], fill=color)
            area = size * size / 2
        shapes.append({"category_id": category["id"], "bbox": [float(x), float(y), float(size), float(size)],
                       "area": round(area, 2), "iscrowd": 0})
    return image, shapes


def write_coco_sample(root: str | Path) -> list[Path]:
    """Write ``root/annotations/instances_<split>.json`` and ``root/<split>/*.jpg`` (standard COCO layout)."""
    root = Path(root)
    written = []
    annotation_id = 1
    for split, (count, first_id) in COCO_SPLITS.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(first_id, first_id + count):
            picture, shapes = draw_shapes(image_id)
            file_name = f"{image_id:012d}.jpg"
            picture.save(root / split / file_name, format="JPEG", quality=92)
            written.append(root / split / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": COCO_SIZE[0], "height": COCO_SIZE[1]})
            for shape in shapes:
                annotations.append({"id": annotation_id, "image_id": image_id, "segmentation": [], **shape})
                annotation_id += 1
        path = root / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"info": {"description": "image_lineage synthetic COCO sample"}, "licenses": [],
                    "images": images, "annotations": annotations, "categories": COCO_CATEGORIES}
        path.write_text(json.dumps(document, indent=1))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw the bundled samples: the cat/dog folders or the COCO sample.")
    parser.add_argument("root", nargs="?", default="image_dataset", help="target folder (default: image_dataset)")
    parser.add_argument("--coco", action="store_true", help="write the COCO detection sample instead (e.g. into coco/sample)")
    args = parser.parse_args(argv)
    for path in (write_coco_sample if args.coco else write_sample_dataset)(args.root):
        print(path)


if __name__ == "__main__":
    main()
