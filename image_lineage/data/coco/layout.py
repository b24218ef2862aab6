"""COCO folders on disk: the standard layout (as unpacked from cocodataset.org) needs no parameters::

    coco_dir/annotations/instances_train2017.json   images in coco_dir/train2017/
    coco_dir/annotations/instances_val2017.json     images in coco_dir/val2017/
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from image_lineage.core.errors import DatasetError
from image_lineage.core.names import IMAGE_EXTENSIONS

INSTANCES_PATTERN = re.compile(r"^instances_(?P<name>.+)\.json$")


@dataclass
class CocoSplit:
    """One annotation file and the folder of its images."""

    name: str  # the layout's own name, e.g. train2017
    annotation_file: Path
    images_dir: Path | str  # str: the images' prefix in an object store (``s3://bucket/coco/train2017``)
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


def unannotated_folders(coco_dir: str | Path) -> list[dict]:
    """Folders of a COCO folder that hold images but have no ``annotations/instances_<name>.json``: each
    ``{"path", "reason"}``. Reading them as COCO is impossible, and leaving them out silently loses data."""
    root = Path(coco_dir)
    annotated = {split.name for split in find_coco_splits(root).values()}
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "annotations" and not p.name.startswith(".")):
        if folder.name not in annotated and holds_images(folder):
            found.append({"path": folder.name, "reason": f"no annotations/instances_{folder.name}.json"})
    return found


def holds_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in entries)
