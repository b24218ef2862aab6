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
