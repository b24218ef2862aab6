"""A checked COCO split in memory: images in id order, annotations per image, categories, the category
mapping models use, the image pass's facts per image, and the split's content digest."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from image_lineage.core.errors import DatasetError
from image_lineage.core.names import ON_BAD_IMAGE_CHOICES, require_choice
from image_lineage.data.coco.layout import CocoSplit
from image_lineage.data.coco.validate import fill_optional_fields, load_coco_json
from image_lineage.data.facts import ImageFacts
from image_lineage.data.object_store import is_object_uri, is_stored
from image_lineage.data.read import read_images

LOGGER = logging.getLogger(__name__)


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
    filled_in: dict[str, int] = field(default_factory=dict)  # optional fields the file left out, filled (counts)

    @cached_property
    def mapping(self) -> CategoryMapping:
        return CategoryMapping.from_categories(self.categories)

    @property
    def category_names(self) -> list[str]:
        return list(self.mapping.names)

    def image_path(self, image: dict) -> Path | str:
        """The image's file, or its ``s3://`` location in a split streamed from an object store."""
        images_dir = self.split.images_dir
        return f"{images_dir}/{image['file_name']}" if is_object_uri(images_dir) else images_dir / image["file_name"]


def split_manifest(index: CocoIndex, digest: str):
    """The split's images as a manifest (:class:`image_lineage.data.folders.Manifest`: path = file_name, label =
    the categories of its objects, sha256, size, geometry), for the runs that store the split: what ``trace``
    finds an image by."""
    from image_lineage.data.folders import ImageRecord, Manifest  # folders imports the COCO layout module

    names = {c["id"]: c["name"] for c in index.categories}
    records = []
    for image in index.images:
        facts = index.facts[image["id"]]
        labels = sorted({names.get(a["category_id"], str(a["category_id"])) for a in index.annotations_by_image.get(image["id"], [])})
        records.append(ImageRecord(image["file_name"], ",".join(labels), facts.size, facts.sha256, facts.width, facts.height))
    return Manifest(str(index.split.images_dir), records, sorted(names.values()), list(index.ignored), digest)


def index_split(split: CocoSplit, max_images: int | None = None) -> CocoIndex:
    """Load, check and index one split; ``max_images`` keeps the first images by id."""
    data = load_coco_json(split.annotation_file)
    filled_in = fill_optional_fields(data)
    images = sorted(data["images"], key=lambda image: image["id"])[: max_images or None]
    kept = {image["id"] for image in images}
    by_image: dict[int, list[dict]] = {image_id: [] for image_id in kept}
    for annotation in sorted(data["annotations"], key=lambda a: a["id"]):
        if annotation["image_id"] in kept:
            by_image[annotation["image_id"]].append(annotation)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    index = CocoIndex(split, images, by_image, categories, filled_in=filled_in)
    missing = [str(index.image_path(image)) for image in images if not is_stored(index.image_path(image))]
    if missing:
        raise DatasetError(
            f"{len(missing)} image file(s) listed in {split.annotation_file} are missing, e.g. {missing[0]}. "
            f"Download them (coco/download_coco.py) or remove them from the annotation file."
        )
    if not images:
        raise DatasetError(f"{split.annotation_file} lists no images: the dataset is empty.")
    fill_sizes_from_files(index)
    return index


def fill_sizes_from_files(index: CocoIndex) -> None:
    """Images the annotation file gives no ``width``/``height`` take them from their files. Read with the
    default check and cached, so the split's own pass reads them no second time (unless it checks deeper)."""
    unsized = [image for image in index.images if not (image.get("width") and image.get("height"))]
    if not unsized:
        return
    for image, facts in zip(unsized, read_images([str(index.image_path(image)) for image in unsized], "structure")):
        if isinstance(facts, ImageFacts):  # else the split's own pass reports the file
            image["width"], image["height"] = facts.width, facts.height
    index.filled_in = {**index.filled_in, "size_from_file": len(unsized)}


def size_mismatch(image: dict, facts: ImageFacts) -> str | None:
    """Why the annotation file's size for ``image`` is not its file's (annotated before a resize, say): its
    boxes would be drawn, trained and evaluated at the wrong scale. A size that matches the picture as stored
    (before its EXIF orientation) is no mismatch: the annotation tool read the stored pixels."""
    listed = (image.get("width"), image.get("height"))
    if listed in ((facts.width, facts.height), (facts.height, facts.width)):
        return None
    return (f"the annotation file says {listed[0]}x{listed[1]} pixels, the file is {facts.width}x{facts.height} "
            f"(annotated before a resize?): fix width/height and scale the boxes")


def subset_index(index: CocoIndex, image_ids: set[int], role: str | None = None) -> CocoIndex:
    """The part of ``index`` holding ``image_ids`` (same categories and labels)."""
    split = CocoSplit(index.split.name, index.split.annotation_file, index.split.images_dir, role or index.split.role)
    images = [image for image in index.images if image["id"] in image_ids]
    by_image = {image["id"]: index.annotations_by_image[image["id"]] for image in images}
    facts = {i: f for i, f in index.facts.items() if i in by_image}
    return CocoIndex(split, images, by_image, index.categories, facts, index.ignored, index.filled_in)


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
                      perceptual: bool = False, engine: str = "local") -> CocoIndex:
    """The split's images through the image pass (one read each, cached): ``index.facts`` filled.

    A file that fails ``image_check`` stops with an error naming it (``fail``), or is left out with its
    annotations and listed in ``ignored`` (``skip``).
    """
    require_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE_CHOICES)
    results = read_images([str(index.image_path(image)) for image in index.images], image_check, perceptual=perceptual,
                          engine=engine)
    facts, ignored = {}, []
    for image, result in zip(index.images, results):
        if isinstance(result, ImageFacts):
            result = size_mismatch(image, result) or result
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
              "crowd_annotations": 0, "images_without_annotations": [],
              "filled_in": {k: v for k, v in index.filled_in.items() if v}}
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
