"""COCO detection folders: layout discovery, validation, content digest, and the Hugging Face form.

The standard layout (as unpacked from cocodataset.org) needs no parameters::

    coco_dir/annotations/instances_train2017.json   images in coco_dir/train2017/
    coco_dir/annotations/instances_val2017.json     images in coco_dir/val2017/

:func:`coco_to_hf` is the one COCO -> ``datasets.Dataset`` conversion in the project (dataset lineage and
the detection trainer's ``input=hf`` both use it). Its rows follow the hub dataset
``detection-datasets/coco``: ``image``, ``image_id``, ``width``, ``height`` and ``objects`` with ``bbox``
(COCO xywh, pixels), ``category`` (a ClassLabel over the category names, contiguous), ``area``, ``id``,
``iscrowd``.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from image_lineage.manifest import DatasetError, HASH_WORKERS

INSTANCES_PATTERN = re.compile(r"^instances_(?P<name>.+)\.json$")


@dataclass
class CocoSplit:
    """One annotation file and the folder of its images."""

    name: str  # the layout's own name, e.g. train2017
    annotation_file: Path
    images_dir: Path
    role: str | None = None  # set when a part of this file plays another split (a held-out validation part)

    @property
    def split(self) -> str:
        """Hugging Face split name: train*, val*, test* -> train, validation, test."""
        return self.role or split_name(self.name)


def split_name(name: str) -> str:
    lowered = name.lower()
    for prefix, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        if lowered.startswith(prefix):
            return split
    return lowered


def is_coco_dir(folder: str | Path) -> bool:
    annotations = Path(folder) / "annotations"
    return annotations.is_dir() and any(INSTANCES_PATTERN.match(p.name) for p in annotations.iterdir())


def find_coco_splits(coco_dir: str | Path) -> dict[str, CocoSplit]:
    """{hf split name: CocoSplit} for every ``annotations/instances_<name>.json`` with a ``<name>/`` folder."""
    root = Path(coco_dir)
    annotations = root / "annotations"
    if not annotations.is_dir():
        raise DatasetError(
            f"{root} is not a COCO folder: expected {annotations}/instances_<name>.json with images in {root}/<name>/."
        )
    splits = {}
    for path in sorted(annotations.iterdir()):
        match = INSTANCES_PATTERN.match(path.name)
        if match:
            name = match.group("name")
            splits[split_name(name)] = CocoSplit(name, path, root / name)
    if not splits:
        raise DatasetError(f"no annotations/instances_<name>.json in {root}: nothing to read as COCO.")
    return splits


def load_coco_json(path: str | Path) -> dict:
    """Read and check a COCO instances file; errors name the file and the offending field or id."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"COCO annotation file {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); a COCO instances file is expected.") from exc
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data, dict) or key not in data]
    if missing:
        raise DatasetError(f"{path} is not a COCO instances file: missing top-level {', '.join(missing)}.")
    check_references(path, data)
    return data


def check_references(path: Path, data: dict) -> None:
    image_ids = {image["id"] for image in data["images"]}
    category_ids = {category["id"] for category in data["categories"]}
    for annotation in data["annotations"]:
        if annotation["image_id"] not in image_ids:
            raise DatasetError(
                f"{path}: annotation {annotation['id']} points at image_id {annotation['image_id']}, "
                f"which is not in 'images'. Remove the annotation or add the image."
            )
        if annotation["category_id"] not in category_ids:
            raise DatasetError(
                f"{path}: annotation {annotation['id']} has category_id {annotation['category_id']}, "
                f"which is not in 'categories'. Add the category or fix the annotation."
            )


@dataclass
class CocoIndex:
    """A checked COCO split: images in id order, annotations per image, contiguous categories."""

    split: CocoSplit
    images: list[dict]
    annotations_by_image: dict[int, list[dict]]
    categories: list[dict]  # in category-id order
    label_of_category: dict[int, int] = field(default_factory=dict)  # COCO id -> contiguous label

    @property
    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]

    def image_path(self, image: dict) -> Path:
        return self.split.images_dir / image["file_name"]


def index_split(split: CocoSplit, max_images: int | None = None) -> CocoIndex:
    """Load, check and index one split; ``max_images`` keeps the first images by id."""
    data = load_coco_json(split.annotation_file)
    images = sorted(data["images"], key=lambda image: image["id"])[: max_images or None]
    kept = {image["id"] for image in images}
    by_image: dict[int, list[dict]] = {image_id: [] for image_id in kept}
    for annotation in sorted(data["annotations"], key=lambda a: a["id"]):
        if annotation["image_id"] in kept:
            by_image[annotation["image_id"]].append(annotation)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    index = CocoIndex(split, images, by_image, categories, {c["id"]: i for i, c in enumerate(categories)})
    missing = [str(index.image_path(image)) for image in images if not index.image_path(image).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} image file(s) listed in {split.annotation_file} are missing, e.g. {missing[0]}. "
            f"Download them (coco/download_coco.py) or remove them from the annotation file."
        )
    if not images:
        raise DatasetError(f"{split.annotation_file} lists no images: the dataset is empty.")
    return index


def subset_index(index: CocoIndex, image_ids: set[int], role: str | None = None) -> CocoIndex:
    """The part of ``index`` holding ``image_ids`` (same categories and labels)."""
    split = CocoSplit(index.split.name, index.split.annotation_file, index.split.images_dir, role or index.split.role)
    images = [image for image in index.images if image["id"] in image_ids]
    by_image = {image["id"]: index.annotations_by_image[image["id"]] for image in images}
    return CocoIndex(split, images, by_image, index.categories, index.label_of_category)


def hold_out(index: CocoIndex, fraction: float = 0.2, seed: int = 42) -> tuple[CocoIndex, CocoIndex]:
    """Split one COCO split into (train, validation) parts by image, seeded."""
    import random

    ids = [image["id"] for image in index.images]
    if len(ids) < 2:
        raise DatasetError(f"{index.split.annotation_file} has {len(ids)} image(s): too few to hold some out for validation.")
    held = set(random.Random(seed).sample(ids, max(1, round(len(ids) * fraction))))
    return subset_index(index, set(ids) - held, "train"), subset_index(index, held, "validation")


def hash_files(paths: list[Path]) -> list[str]:
    def sha256(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        return list(pool.map(sha256, paths))


def compute_coco_digest(index: CocoIndex) -> str:
    """sha256 over every image's bytes and the canonical annotations: a changed pixel or box changes it."""
    digest = hashlib.sha256()
    for image, file_hash in zip(index.images, hash_files([index.image_path(i) for i in index.images])):
        digest.update(f"{image['id']}\t{image['file_name']}\t{file_hash}\n".encode())
    canonical = {
        "categories": index.categories,
        "annotations": [
            {k: a[k] for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd")}
            for image in index.images
            for a in index.annotations_by_image[image["id"]]
        ],
    }
    digest.update(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def hf_features(category_names: list[str]):
    """The ``detection-datasets/coco`` row layout."""
    from datasets import ClassLabel, Features, Image, List, Value

    return Features(
        {
            "image_id": Value("int64"),
            "image": Image(),
            "width": Value("int64"),
            "height": Value("int64"),
            "objects": {
                "id": List(Value("int64")),
                "area": List(Value("float32")),
                "bbox": List(List(Value("float32"), length=4)),
                "category": List(ClassLabel(names=category_names)),
                "iscrowd": List(Value("bool")),
            },
        }
    )


def coco_rows(index: CocoIndex):
    """One row per image; images stay files on disk (the Image feature stores their paths)."""
    for image in index.images:
        annotations = index.annotations_by_image[image["id"]]
        yield {
            "image_id": image["id"],
            "image": str(index.image_path(image).resolve()),
            "width": image["width"],
            "height": image["height"],
            "objects": {
                "id": [a["id"] for a in annotations],
                "area": [float(a["area"]) for a in annotations],
                "bbox": [[float(v) for v in a["bbox"]] for a in annotations],
                "category": [index.label_of_category[a["category_id"]] for a in annotations],
                "iscrowd": [bool(a.get("iscrowd", 0)) for a in annotations],
            },
        }


def coco_to_hf(index: CocoIndex):
    """The split as a ``datasets.Dataset`` in the ``detection-datasets/coco`` layout."""
    from datasets import Dataset

    rows = list(coco_rows(index))
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    return Dataset.from_dict(columns, features=hf_features(index.category_names), split=index.split.split)


def instances_per_category(index: CocoIndex) -> dict[str, int]:
    counts = {name: 0 for name in index.category_names}
    for image_annotations in index.annotations_by_image.values():
        for a in image_annotations:
            counts[index.categories[index.label_of_category[a["category_id"]]]["name"]] += 1
    return counts


def images_per_category(index: CocoIndex) -> dict[str, int]:
    counts = {name: 0 for name in index.category_names}
    for image_annotations in index.annotations_by_image.values():
        for label in {index.label_of_category[a["category_id"]] for a in image_annotations}:
            counts[index.categories[label]["name"]] += 1
    return counts
