"""Builders for small image trees in tmp_path (imagefolder layout: <version>/<class>/<file>)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size: tuple[int, int] = (24, 16)) -> Path:
    """A small image (format from the suffix) whose pixels depend on ``seed`` modulo lcm(256, width): 768
    pictures at the default size, so two seeds that differ by a multiple of that draw the same picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 151) % 256))
    image.putpixel((seed % size[0], 0), (255 - seed % 256, 0, 0))
    image.save(path)
    return path


def build_tree(root: Path, spec: dict[str, dict[str, int]], ext: str = "png") -> Path:
    """``{"v1": {"cat": 2}}`` -> root/v1/cat/cat_01.png, cat_02.png; the same name gives the same picture."""
    for version, classes in spec.items():
        for label, count in classes.items():
            folder = root / version / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(1, count + 1):
                write_image(folder / f"{label}_{i:02d}.{ext}", seed=sum(map(ord, label)) * 100 + i)
    return root


def build_real_versions(catsdogs: Path, root: Path, v1_cats: int = 6, v2_cats: int = 4, v2_dogs: int = 5) -> Path:
    """v1 = the first cats; v2 = fewer cats plus dogs: real photos, copied (never modified in place)."""
    cats = sorted((catsdogs / "cat").glob("*.jpg"))
    dogs = sorted((catsdogs / "dog").glob("*.jpg"))
    for version, picks in {"v1": {"cat": cats[:v1_cats]}, "v2": {"cat": cats[:v2_cats], "dog": dogs[:v2_dogs]}}.items():
        for label, files in picks.items():
            folder = root / version / label
            folder.mkdir(parents=True, exist_ok=True)
            for file in files:
                shutil.copyfile(file, folder / file.name)
    return root


def build_unique_versions(catsdogs: Path, root: Path) -> Path:
    """:func:`build_real_versions` plus one drawn image no other test has: a digest of the test's own (the
    suite's server stores each digest's files once, so shared content would link to another test's run)."""
    build_real_versions(catsdogs, root)
    # random pixels, not write_image with a random seed: that draws one of only 768 pictures, and with eleven
    # calls in the suite, two would draw the same one in about one run of 14
    pixels = np.random.default_rng().integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "v2" / "cat" / "marker.png")
    return root


def artifact_paths(run_id: str, path: str | None = None) -> list[str]:
    """Every artifact file of a run, recursively, sorted."""
    import mlflow

    found = []
    for info in mlflow.MlflowClient().list_artifacts(run_id, path):
        found.extend(artifact_paths(run_id, info.path) if info.is_dir else [info.path])
    return sorted(found)


QUALITY_METRICS = {"quality/exact_duplicate_pairs", "quality/near_duplicate_pairs", "quality/leakage_pairs",
                   "quality/label_conflicts", "quality/set_aside_images"}


def dataset_metrics(run) -> dict:
    """A run's metrics other than the leakage check's (which every checked run also holds: asserted here)."""
    assert QUALITY_METRICS <= set(run.data.metrics), sorted(run.data.metrics)
    return {k: v for k, v in run.data.metrics.items() if k not in QUALITY_METRICS}


# a detector that trains in seconds on a CPU: no downloaded weights, mobilenet 320, tiny images, 2 per split
SMALL_DETECTOR = {"model": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": None, "image_size": 128,
                  "num_workers": 0, "batch_size": 2, "max_images": 2, "previews": 1}


# COCO annotation breakages: each edits a loaded instances file and returns what the error must say


def break_duplicate_image_id(data):
    data["images"][1]["id"] = data["images"][0]["id"]
    return f"images ids used more than once: {data['images'][0]['id']}"


def break_duplicate_annotation_id(data):
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    return f"annotations ids used more than once: {data['annotations'][0]['id']}"


def break_missing_bbox(data):
    del data["annotations"][0]["bbox"]
    return f"annotation id {data['annotations'][0]['id']} has no 'bbox'"


def break_missing_file_name(data):
    del data["images"][0]["file_name"]
    return f"image id {data['images'][0]['id']} has no 'file_name'"


def break_image_without_id(data):
    del data["images"][2]["id"]
    return "images[2] has no 'id'"


def break_short_bbox(data):
    data["annotations"][0]["bbox"] = [1, 2, 3]
    return f"annotation {data['annotations'][0]['id']} has bbox [1, 2, 3]"
