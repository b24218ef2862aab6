"""The data files a run stores for its dataset (once per tracking server: the store-or-link stage calls these
only for the run that holds a digest): a folder's samples, archive, manifest and class chart, the sample
grids the run page shows; a COCO split's annotation file, images and annotated previews. A version run in
another experiment than the holder keeps its own evidence (samples, manifest, chart, grids) and links only
to the archive."""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

import mlflow

from image_lineage.data.archive import write_archive
from image_lineage.data.folders import Manifest
from image_lineage.data.kinds import LoadedSplit
from image_lineage.flows.charts import plot_class_counts
from image_lineage.tracking.artifacts import link_or_copy

LOGGER = logging.getLogger(__name__)


def stage_folder_files(manifest: Manifest, stage: Path, max_samples: int, title: str, archive_name: str
                       ) -> tuple[str, str | None]:
    """A folder's files, laid out for one upload: its evidence (:func:`stage_evidence`) and, past
    ``max_samples`` in a class, one archive of every image. Returns (where every image is, relative to
    ``stage``: ``samples`` or ``archive/<archive_name>.tar``; the archive's sha256 or None)."""
    stage_evidence(manifest, stage, max_samples, title)
    if not needs_archive(manifest, max_samples):
        return "samples", None
    stored_at = f"archive/{archive_name}.tar"
    return stored_at, stage_archive(manifest, stage / stored_at)


def stage_evidence(manifest: Manifest, stage: Path, max_samples: int, title: str) -> None:
    """What a version run shows of its data (the homework's deliverables): up to ``max_samples`` images of
    each class under ``samples/<class>/``, ``manifest.json`` and the class chart."""
    stage_samples(manifest, stage / "samples", max_samples)
    (stage / "manifest.json").write_text(manifest.to_json())
    plot_class_counts(manifest.class_counts(), stage / "class_counts.png", f"{title} ({len(manifest.records)} images)")


def needs_archive(manifest: Manifest, max_samples: int) -> bool:
    """Whether the samples leave images out (then one archive holds them all)."""
    return max(manifest.class_counts().values()) > max_samples


MAX_GRIDS = 50  # one request each: 1,000 classes took 19 s; every class's samples are under samples/ anyway


def log_sample_grids(manifest: Manifest, limit: int) -> None:
    """The run page shows these as images, one per class (the first ``MAX_GRIDS`` classes)."""
    labels = manifest.non_empty_classes()
    if len(labels) > MAX_GRIDS:
        LOGGER.info("sample grids for the first %d of %d classes (every class has samples under samples/)",
                    MAX_GRIDS, len(labels))
    for label in labels[:MAX_GRIDS]:
        mlflow.log_image(sample_grid(manifest, label, limit), key=f"samples_{label}", synchronous=True)


def sample_grid(manifest: Manifest, label: str, limit: int, cell: int = 128, columns: int = 4):
    """Up to 16 (and ``limit``) of a class's images as one grid picture, each fitted into a ``cell`` square."""
    from PIL import Image, ImageOps

    first = itertools.islice((r for r in manifest.records if r.label == label), min(16, max(limit, 1)))
    paths = [Path(manifest.version_dir) / r.path for r in first]  # not a Path for each of 100,000 records
    rows = -(-len(paths) // columns)
    grid = Image.new("RGB", (cell * min(columns, len(paths)), cell * rows), "white")
    for position, path in enumerate(paths):
        with Image.open(path) as image:
            image.draft("RGB", (cell, cell))
            thumbnail = ImageOps.exif_transpose(image).convert("RGB")  # upright, as shown
            thumbnail.thumbnail((cell, cell))
        grid.paste(thumbnail, (cell * (position % columns), cell * (position // columns)))
    return grid


def stage_samples(manifest: Manifest, target: Path, per_class: int) -> None:
    """Link (or copy) up to ``per_class`` images of each class under ``target/<class>/``."""
    taken: dict[str, int] = {}
    source_root = Path(manifest.version_dir)
    for record in manifest.records:  # sorted by path, so samples are the first files of each class
        if taken.get(record.label, 0) >= per_class:
            continue
        taken[record.label] = taken.get(record.label, 0) + 1
        destination = target / record.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(source_root / record.path, destination)


def stage_archive(manifest: Manifest, path: Path) -> str:
    """The whole version in one uncompressed, deterministic tar (images are already compressed): one
    upload, the same bytes for the same files; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = manifest.version_dir  # plain strings: a Path per record costs ~10 us, a second at 100,000 images
    return write_archive(((record.path, os.path.join(root, record.path)) for record in manifest.records), path)


def stage_coco_files(splits: list[LoadedSplit], root: Path, artifacts_max: int) -> dict[str, str]:
    """Per split, ``<split>/`` with the annotation file and the images (files, or one deterministic archive
    past ``artifacts_max``); returns each archive's sha256 by split."""
    archives = {}
    for loaded in splits:
        index, folder = loaded.index, root / loaded.split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / index.split.annotation_file.name).write_bytes(index.split.annotation_file.read_bytes())
        if len(index.images) <= artifacts_max:
            for image in index.images:
                target = folder / "images" / image["file_name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(index.image_path(image), target)
        else:
            archives[loaded.split] = write_archive(((f"{index.split.name}/{image['file_name']}", index.image_path(image))
                                                    for image in index.images), folder / f"{index.split.name}_images.tar")
    return archives
