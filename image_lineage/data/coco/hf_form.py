"""The Hugging Face form of a COCO split: the one COCO -> ``datasets.Dataset`` conversion in the project
(dataset lineage and the detection trainer's ``input=hf`` both use it).

Its rows follow the hub dataset ``detection-datasets/coco`` (see :func:`hf_features`): ``image``,
``image_id``, ``width``, ``height`` and ``objects`` with ``bbox_id``, ``category`` (a ClassLabel over the
category names, in id order), ``bbox`` (``[x_min, y_min, x_max, y_max]`` in pixels, as the hub's),
``area``, plus ``iscrowd``.
"""

from __future__ import annotations

from image_lineage.data.coco.index import CocoIndex, xywh_to_xyxy


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
