"""The data files a run stores for its dataset (once per tracking server: the store-or-link stage calls these
only for the run that holds a digest): a folder's samples, manifest and class chart, the sample grids the run
page shows, and past the samples every image in the content store with the version's map; a COCO split's
annotation file and images (as files, or in the content store) and annotated previews. A version run in
another experiment than the holder keeps its own evidence (samples, manifest, chart, grids) and links only
to the store map."""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

import mlflow

from image_lineage.data.coco.index import split_manifest
from image_lineage.data.folders import Manifest
from image_lineage.data.kinds import LoadedSplit
from image_lineage.data.locations import join, open_image, read_in_order
from image_lineage.data.object_store import is_object_uri
from image_lineage.data.packs import file_sha256
from image_lineage.flows.charts import plot_class_counts
from image_lineage.tracking.artifacts import link_or_copy
from image_lineage.tracking.content_store import MAP_NAME, store_version

LOGGER = logging.getLogger(__name__)


def stage_folder_files(manifest: Manifest, stage: Path, max_samples: int, title: str) -> tuple[str, set[str]]:
    """A folder's files, laid out for one upload: its evidence (:func:`stage_evidence`) and, past
    ``max_samples`` in a class, every image in the content store (only the files no earlier version stored
    are uploaded) with the version's map. Returns (where every image is, relative to ``stage``: ``samples``
    or ``store.json.gz``; the sha256s of the packs that hold them)."""
    stage_evidence(manifest, stage, max_samples, title)
    if not needs_store(manifest, max_samples):
        return "samples", set()
    root = manifest.version_dir  # plain strings: a Path per record costs ~10 us, a second at 100,000 images
    files = [(r.path, r.sha256, r.size, os.path.join(root, r.path)) for r in manifest.records]
    return MAP_NAME, store_version(files, stage, manifest=manifest.stored()[0])


def stage_evidence(manifest: Manifest, stage: Path, max_samples: int, title: str) -> None:
    """What a version run shows of its data (the homework's deliverables): up to ``max_samples`` images of
    each class under ``samples/<class>/``, ``manifest.json`` (``manifest.json.gz`` past 10,000 images:
    :meth:`Manifest.stored`) and the class chart."""
    stage_samples(manifest, stage / "samples", max_samples)
    name, data = manifest.stored()
    (stage / name).write_bytes(data)
    plot_class_counts(manifest.class_counts(), stage / "class_counts.png", f"{title} ({len(manifest.records)} images)")


def needs_store(manifest: Manifest, max_samples: int) -> bool:
    """Whether the samples leave images out (then the content store holds them all)."""
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
    paths = [join(manifest.version_dir, r.path) for r in first]  # not a Path for each of 100,000 records
    rows = -(-len(paths) // columns)
    grid = Image.new("RGB", (cell * min(columns, len(paths)), cell * rows), "white")
    for position, path in enumerate(paths):
        with open_image(path) as image:
            image.draft("RGB", (cell, cell))
            thumbnail = ImageOps.exif_transpose(image).convert("RGB")  # upright, as shown
            thumbnail.thumbnail((cell, cell))
        grid.paste(thumbnail, (cell * (position % columns), cell * (position // columns)))
    return grid


def stage_samples(manifest: Manifest, target: Path, per_class: int) -> None:
    """Link (or copy) up to ``per_class`` images of each class under ``target/<class>/``."""
    taken: dict[str, int] = {}
    picked = []
    for record in manifest.records:  # sorted by path, so samples are the first files of each class
        if taken.get(record.label, 0) >= per_class:
            continue
        taken[record.label] = taken.get(record.label, 0) + 1
        destination = target / record.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        picked.append((join(manifest.version_dir, record.path), destination))
    if picked and is_object_uri(picked[0][0]):  # a streamed prefix: the objects' bytes, fetched a few at a time
        for (_, destination), data in zip(picked, read_in_order([location for location, _ in picked])):
            destination.write_bytes(data)
    else:
        for location, destination in picked:
            link_or_copy(location, destination)


def stage_coco_files(splits: list[LoadedSplit], root: Path, artifacts_max: int) -> set[str]:
    """Per split, ``<split>/`` with its manifest (:func:`image_lineage.data.coco.index.split_manifest`), the
    annotation file and the images as files, or past ``artifacts_max``
    images, both in the content store with the split's map ``<split>/store.json.gz``; returns the sha256s
    of the packs that hold them."""
    packs = set()
    for loaded in splits:
        index, folder = loaded.index, root / loaded.split
        folder.mkdir(parents=True, exist_ok=True)
        name, data = split_manifest(index, loaded.digest).stored()  # each image's sha256: what trace finds it by
        (folder / name).write_bytes(data)
        annotation = index.split.annotation_file
        if len(index.images) <= artifacts_max:
            (folder / annotation.name).write_bytes(annotation.read_bytes())
            locations = [index.image_path(image) for image in index.images]
            # a split streamed from an object store: its objects' bytes, read ahead in order (no file to link)
            streamed = read_in_order(locations) if locations and is_object_uri(locations[0]) else None
            for image, location in zip(index.images, locations):
                target = folder / "images" / image["file_name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                if streamed is not None:
                    target.write_bytes(next(streamed))
                else:
                    link_or_copy(location, target)
            continue
        files = [(annotation.name, file_sha256(annotation), annotation.stat().st_size, str(annotation))]
        files += [(f"images/{image['file_name']}", index.facts[image["id"]].sha256, index.facts[image["id"]].size,
                   str(index.image_path(image))) for image in index.images]
        packs |= store_version(files, folder)
    return packs
