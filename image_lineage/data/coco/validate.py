"""COCO instances files, read and checked: every error names the file, the entry (by id, or by position)
and the field, and says what to do."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from image_lineage.core.errors import DatasetError


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
    check_id_types(path, data)
    check_unique_ids(path, data)
    check_category_names(path, data)
    check_file_names(path, data)
    check_references(path, data)
    return data


def check_id_types(path: Path, data: dict) -> None:
    """COCO ids are integers (pycocotools, torchvision and COCOeval index by them); some exporters write strings."""
    for section, key in (("images", "id"), ("annotations", "id"), ("annotations", "image_id"),
                         ("annotations", "category_id"), ("categories", "id")):
        for position, entry in enumerate(data[section]):
            value = entry[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise DatasetError(f"{path}: {section}[{position}] has {key} {value!r}, a {type(value).__name__}; COCO "
                                   f"ids are integers. Convert the ids (and the references to them) to integers.")


def check_category_names(path: Path, data: dict) -> None:
    """Two categories of one name would be one class to a reader of the labels and two to the model."""
    by_name = collections.defaultdict(list)
    for category in data["categories"]:
        by_name[category["name"]].append(category["id"])
    for name, ids in by_name.items():
        if len(ids) > 1:
            raise DatasetError(f"{path}: categories {', '.join(map(str, ids))} share the name {name!r} (field 'name'). "
                               f"Give each its own name, or merge them into one category.")


def check_file_names(path: Path, data: dict) -> None:
    """``file_name`` is relative to the split's image folder: an absolute path or one leading out of it would
    read (and log) a file that is not part of the dataset."""
    for image in data["images"]:
        name = str(image["file_name"])
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or (len(name) > 1 and name[1] == ":"):
            raise DatasetError(f"{path}: image {image['id']} has file_name {name!r}, outside the split's image "
                               f"folder; COCO file names are relative to it. Copy the file into the folder and "
                               f"give its name relative to the folder.")


def fill_optional_fields(data: dict) -> dict[str, int]:
    """Fields many exporters leave out, filled as COCO defines them: ``area`` from the box (COCO's own is the
    mask's area, which a box-only export does not have), ``iscrowd`` 0. Returns what was filled, for the
    validation report. (An image's missing ``width``/``height`` comes from its file: :func:`index_split`.)"""
    filled = {"area_from_bbox": 0, "iscrowd_default_0": 0}
    for annotation in data["annotations"]:
        if "area" not in annotation:
            annotation["area"] = float(annotation["bbox"][2] * annotation["bbox"][3])
            filled["area_from_bbox"] += 1
        if "iscrowd" not in annotation:
            annotation["iscrowd"] = 0
            filled["iscrowd_default_0"] += 1
    return filled


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
