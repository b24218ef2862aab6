"""COCO detection folders: layout discovery, validation, content digest, and the Hugging Face form.

The standard layout (as unpacked from cocodataset.org) needs no parameters::

    coco_dir/annotations/instances_train2017.json   images in coco_dir/train2017/
    coco_dir/annotations/instances_val2017.json     images in coco_dir/val2017/

:func:`coco_to_hf` is the one COCO -> ``datasets.Dataset`` conversion in the project (dataset lineage and
the detection trainer's ``input=hf`` both use it). Its rows follow the hub dataset
``detection-datasets/coco`` (see :func:`hf_features`): ``image``, ``image_id``, ``width``, ``height`` and
``objects`` with ``bbox_id``, ``category`` (a ClassLabel over the category names, in id order), ``bbox``
(``[x_min, y_min, x_max, y_max]`` in pixels, as the hub's), ``area``, plus ``iscrowd``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from image_lineage.core import IMAGE_EXTENSIONS, ON_BAD_IMAGE_CHOICES, DatasetError
from image_lineage.image_pass import ImageFacts, read_images

LOGGER = logging.getLogger(__name__)

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
    check_fields(path, data)
    check_unique_ids(path, data)
    check_references(path, data)
    return data


REQUIRED_FIELDS = {"images": ("id", "file_name"), "annotations": ("id", "image_id", "category_id", "bbox"),
                   "categories": ("id", "name")}


def check_fields(path: Path, data: dict) -> None:
    """Every entry has the fields the loaders read, and boxes are four numbers: an error names the file, the
    entry (by id, or by position when it has none) and the field."""
    for section, fields in REQUIRED_FIELDS.items():
        for position, entry in enumerate(data[section]):
            missing = [field for field in fields if not isinstance(entry, dict) or field not in entry]
            if missing:
                who = (f"{section[:-1]} id {entry['id']}" if isinstance(entry, dict) and "id" in entry
                       else f"{section}[{position}]")
                raise DatasetError(f"{path}: {who} has no {', '.join(map(repr, missing))}; every entry of "
                                   f"'{section}' needs {', '.join(fields)}. Add the field or remove the entry.")
    for annotation in data["annotations"]:
        box = annotation["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise DatasetError(f"{path}: annotation {annotation['id']} has bbox {box!r}; COCO boxes are "
                               f"[x, y, width, height], four numbers.")


def check_unique_ids(path: Path, data: dict) -> None:
    """Repeated image, annotation or category ids are an error: two pictures under one image id would share
    each other's boxes in every form we log and train on."""
    for section in REQUIRED_FIELDS:
        counts = collections.Counter(entry["id"] for entry in data[section])
        repeated = sorted((i for i, count in counts.items() if count > 1), key=str)
        if repeated:
            shown = ", ".join(map(str, repeated[:10])) + (f" and {len(repeated) - 10} more" if len(repeated) > 10 else "")
            raise DatasetError(f"{path}: {section} ids used more than once: {shown}. Give each entry of "
                               f"'{section}' its own id.")


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


@dataclass(frozen=True)
class CategoryMapping:
    """COCO category ids (non-contiguous, e.g. 1, 3, 7) <-> contiguous indexes and model labels.

    ``index_of`` is the 0-based position (the Hugging Face ClassLabel value); ``label_of`` is that + 1,
    since torchvision's detectors reserve label 0 for the background.
    """

    coco_ids: tuple[int, ...]  # index -> COCO id
    names: tuple[str, ...]

    @classmethod
    def from_categories(cls, categories: list[dict]) -> "CategoryMapping":
        ordered = sorted(categories, key=lambda c: c["id"])
        return cls(tuple(c["id"] for c in ordered), tuple(c["name"] for c in ordered))

    @classmethod
    def from_index(cls, index: "CocoIndex") -> "CategoryMapping":
        return index.mapping

    @cached_property
    def _positions(self) -> dict[int, int]:
        return {coco_id: position for position, coco_id in enumerate(self.coco_ids)}

    @property
    def num_classes(self) -> int:
        """Model outputs, the background included."""
        return len(self.coco_ids) + 1

    def index_of(self, coco_id: int) -> int:
        return self._positions[coco_id]

    def label_of(self, coco_id: int) -> int:
        return self._positions[coco_id] + 1

    def to_json(self) -> str:
        return json.dumps({str(label): {"coco_id": coco_id, "name": name}
                           for label, (coco_id, name) in enumerate(zip(self.coco_ids, self.names), start=1)})

    @classmethod
    def from_json(cls, text: str) -> "CategoryMapping":
        items = sorted(json.loads(text).items(), key=lambda item: int(item[0]))
        return cls(tuple(v["coco_id"] for _, v in items), tuple(v["name"] for _, v in items))


@dataclass
class CocoIndex:
    """A checked COCO split: images in id order, annotations per image, categories in id order."""

    split: CocoSplit
    images: list[dict]
    annotations_by_image: dict[int, list[dict]]
    categories: list[dict]  # in category-id order
    facts: dict[int, ImageFacts] = field(default_factory=dict)  # image id -> the image pass's facts
    ignored: list[dict] = field(default_factory=list)  # {"path", "reason"}: images left out (on_bad_image=skip)

    @cached_property
    def mapping(self) -> CategoryMapping:
        return CategoryMapping.from_categories(self.categories)

    @property
    def category_names(self) -> list[str]:
        return list(self.mapping.names)

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
    index = CocoIndex(split, images, by_image, categories)
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
    facts = {i: f for i, f in index.facts.items() if i in by_image}
    return CocoIndex(split, images, by_image, index.categories, facts, index.ignored)


def hold_out(index: CocoIndex, fraction: float = 0.2, seed: int = 42) -> tuple[CocoIndex, CocoIndex]:
    """Split one COCO split into (train, validation) parts by image, seeded."""
    ids = [image["id"] for image in index.images]
    if len(ids) < 2:
        raise DatasetError(f"{index.split.annotation_file} has {len(ids)} image(s): too few to hold some out for validation.")
    held = set(random.Random(seed).sample(ids, max(1, round(len(ids) * fraction))))
    validation = subset_index(index, held, "validation")
    validation.ignored = []  # the files left out of the split are reported once, with its train part
    return subset_index(index, set(ids) - held, "train"), validation


def read_split_images(index: CocoIndex, image_check: str = "structure", on_bad_image: str = "fail",
                      perceptual: bool = False) -> CocoIndex:
    """The split's images through the image pass (one read each, cached): ``index.facts`` filled.

    A file that fails ``image_check`` stops with an error naming it (``fail``), or is left out with its
    annotations and listed in ``ignored`` (``skip``).
    """
    if on_bad_image not in ON_BAD_IMAGE_CHOICES:
        raise DatasetError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE_CHOICES)}, got {on_bad_image!r}.")
    results = read_images([str(index.image_path(image)) for image in index.images], image_check, perceptual=perceptual)
    facts, ignored = {}, []
    for image, result in zip(index.images, results):
        if isinstance(result, ImageFacts):
            facts[image["id"]] = result
        elif on_bad_image == "skip":
            LOGGER.warning("skipping bad image %s: %s", index.image_path(image), result)
            ignored.append({"path": f"{index.split.name}/{image['file_name']}", "image_id": image["id"], "reason": result})
        else:
            raise DatasetError(
                f"bad image {index.image_path(image)} (image_id {image['id']} in {index.split.annotation_file}): "
                f"{result}. Replace or remove the file, or pass -P on_bad_image=skip to leave it and its "
                f"annotations out (they are then listed in the run)."
            )
    if not facts:
        raise DatasetError(f"no usable image left in {index.split.images_dir}: every image failed the {image_check} check.")
    kept = subset_index(index, set(facts))
    kept.facts, kept.ignored = facts, index.ignored + ignored
    return kept


def canonical_annotations(index: CocoIndex, image: dict) -> str:
    """One ``category<TAB>x,y,w,h`` line per annotation of ``image`` (boxes to 0.1 px), sorted."""
    return "\n".join(sorted(
        f"{index.mapping.names[index.mapping.index_of(a['category_id'])]}\t{','.join(f'{v:.1f}' for v in a['bbox'])}"
        for a in index.annotations_by_image[image["id"]]
    ))


def compute_coco_digest(index: CocoIndex) -> str:
    """sha256 over every image's bytes and the canonical annotations: a changed pixel or box changes it.

    The image hashes come from the image pass (:func:`read_split_images`; run here if not run yet)."""
    if set(index.facts) != {image["id"] for image in index.images}:
        index = read_split_images(index)
    digest = hashlib.sha256()
    for image in index.images:
        digest.update(f"{image['id']}\t{image['file_name']}\t{index.facts[image['id']].sha256}\n".encode())
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


def validation_report(index: CocoIndex) -> dict:
    """What is wrong or notable in a split beyond what :func:`coco.index_split` refuses outright."""
    report = {"images": len(index.images), "annotations": 0, "out_of_bounds_boxes": [], "zero_area_boxes": [],
              "crowd_annotations": 0, "images_without_annotations": []}
    for image in index.images:
        annotations = index.annotations_by_image[image["id"]]
        if not annotations:
            report["images_without_annotations"].append(image["id"])
        for a in annotations:
            report["annotations"] += 1
            report["crowd_annotations"] += int(bool(a.get("iscrowd", 0)))
            x, y, w, h = a["bbox"]
            if w <= 0 or h <= 0:
                report["zero_area_boxes"].append(a["id"])
            elif x < 0 or y < 0 or x + w > image["width"] + 0.5 or y + h > image["height"] + 0.5:
                report["out_of_bounds_boxes"].append(a["id"])
    return report


def xywh_to_xyxy(box_xywh: list[float]) -> list[float]:
    """COCO ``[x, y, width, height]`` -> ``[x_min, y_min, x_max, y_max]`` (Pascal VOC), in pixels."""
    x, y, w, h = box_xywh
    return [float(x), float(y), float(x + w), float(y + h)]


# The hub dataset detection-datasets/coco was pushed by blinjrm/detection-datasets; its rows' features are
# the ``Features(...)`` of DetectionDataset.get_hf_dataset at commit 0181798538fbd1b3b39a33af41445010fb202480
# (src/detection_datasets/detection_dataset.py), with boxes from Bbox.to_voc (src/detection_datasets/bbox.py):
# image_id, image, width, height (int64), objects = sequence of {bbox_id int64, category ClassLabel,
# bbox 4 x float64 as [x_min, y_min, x_max, y_max] in pixels, area int64}. We add objects.iscrowd (bool):
# COCO's crowd flag, which training and COCOeval need and the hub form drops.
HUB_FORM_ADDITIONS = ("iscrowd",)


def hf_features(category_names: list[str]):
    """The ``detection-datasets/coco`` row layout, plus ``objects.iscrowd``."""
    from datasets import ClassLabel, Features, Image, List, Value

    return Features(
        {
            "image_id": Value("int64"),
            "image": Image(),
            "width": Value("int64"),
            "height": Value("int64"),
            "objects": {
                "bbox_id": List(Value("int64")),
                "category": List(ClassLabel(names=category_names)),
                "bbox": List(List(Value("float64"), length=4)),
                "area": List(Value("int64")),
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
                "bbox_id": [a["id"] for a in annotations],
                "category": [index.mapping.index_of(a["category_id"]) for a in annotations],
                "bbox": [xywh_to_xyxy(a["bbox"]) for a in annotations],
                "area": [round(a["area"]) for a in annotations],
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
            counts[index.mapping.names[index.mapping.index_of(a["category_id"])]] += 1
    return counts


def images_per_category(index: CocoIndex) -> dict[str, int]:
    counts = {name: 0 for name in index.category_names}
    for image_annotations in index.annotations_by_image.values():
        for position in {index.mapping.index_of(a["category_id"]) for a in image_annotations}:
            counts[index.mapping.names[position]] += 1
    return counts
