"""What a dataset source kind is: the first stage of the one ingestion path.

A kind knows, for one way datasets are stored (an image folder, a COCO folder, a hub dataset, ...):

* ``detect(source)``: whether a ``source`` string (``-P source=...``) is one of its datasets;
* ``splits(source, wanted)``: which splits it holds (``wanted`` is a split name or ``all``), each as a
  handle only the kind reads;
* ``load_split(split, handle, options)``: one split through the image pass, as a :class:`LoadedSplit`:
  its content digest, class balance, images (for the leakage check), a :class:`SourceRef` saying where it
  came from, and its Hugging Face form, built only when a flow asks for it;
* ``reload(source_type, source, options)``: the split again from a logged source (its type and its JSON
  dict), or None when that source is not this kind's;
* for sources that hold versions (``image_dataset/`` holding ``v1/`` and ``v2/``): ``versions``,
  ``version_source`` and ``class_names`` (see :mod:`image_lineage.data.versions`).

A kind whose images are files builds its split with :func:`manifest_split` from a manifest
(:func:`image_lineage.data.folders.manifest_from_files`), and every flow (a folder version, the Hugging
Face form, the leakage check) then takes it as it takes an image folder. Adding a kind is one module with
a :class:`SourceKind` subclass and one ``register(...)`` line in ``image_lineage/data/kinds/__init__.py``.

Nothing here imports ``mlflow``: the tracking layer turns a :class:`SourceRef` into an MLflow ``DatasetSource``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, NamedTuple

from image_lineage.core.errors import LineageError
from image_lineage.data.folders import Manifest

SPLIT_CHOICES = ("all", "train", "validation", "test")


class SplitImage(NamedTuple):
    """One image of a split, as the leakage check reads it (a NamedTuple: one per image on a re-log's path)."""

    path: str  # as the report shows it: relative to the dataset, e.g. "val/cat/cat_03.jpg"
    file: str  # the file to read
    split: str
    label: str | None = None  # classification label; None for detection images
    annotations: str | None = None  # detection: the image's canonical annotations, to compare copies


@dataclass
class LoadOptions:
    """How splits are read: hub revision, what the image pass checks and does with a bad image."""

    revision: str | None = None
    image_check: str = "structure"
    on_bad_image: str = "fail"
    perceptual: bool = False  # compute perceptual hashes in the same read (the leakage check follows)
    max_images: int = 0  # COCO: the first images by id only; 0 = all
    engine: str = "local"  # where the image pass runs: here, or a Spark job (image_lineage.data.spark_pass)
    files_on_disk: bool = False  # the consumer reads the files from disk (training): an s3:// prefix is mirrored


@dataclass(frozen=True)
class SourceRef:
    """Where a split came from: the type of MLflow ``DatasetSource`` that records it (``hugging_face``,
    ``folder``, ``coco``) and that source's JSON fields."""

    type: str
    fields: dict


@dataclass
class LoadedSplit:
    """One split, ready to check and log: its content digest, class balance and images."""

    split: str
    digest: str  # full sha256 hex
    class_counts: dict[str, int]
    count_kind: str  # "rows" (classification) or "instances" (detection)
    targets: str | None  # the label column of the Hugging Face form
    source: SourceRef  # where the Hugging Face form comes from (reloadable)
    build_dataset: Callable[[], Any]  # makes the Hugging Face form (``datasets.Dataset``): see ``dataset``
    manifest: Manifest | None = None  # image files with labels (folder kinds)
    index: Any = None  # a COCO split's checked index (:class:`image_lineage.data.coco.index.CocoIndex`)
    remote: Any = None  # an object-store source's listing (:class:`image_lineage.data.object_store.Mirror`)
    ignored: list[dict] = field(default_factory=list)  # files left out, each {"path", "reason"}
    report: dict | None = None  # what a validation found (COCO: boxes out of bounds, zero area, ...)
    profile: dict = field(default_factory=dict)  # the Datasets panel's summary (:func:`image_profile`)
    list_images: Callable[[], list[SplitImage]] | None = None  # makes ``images``; None where images are not files

    @cached_property
    def dataset(self):
        """The Hugging Face form, built when first asked for (a folder version's run never asks)."""
        return self.build_dataset()

    @cached_property
    def images(self) -> list[SplitImage] | None:
        """Its image files for the leakage check, listed when first asked for (a re-log that reuses an earlier
        run's check never asks); None where its images are not files."""
        return self.list_images() if self.list_images is not None else None


class SourceKind:
    """One kind of dataset source; see the module docstring."""

    name = "kind"  # recorded in the run tag dataset.source_kind
    image_files = True  # its images are files the leakage check reads (a hub dataset's rows are not)

    def detect(self, source: str) -> bool:
        raise NotImplementedError

    def splits(self, source: str, wanted: str) -> dict[str, object]:
        """{split name: handle}; the default picks ``wanted`` from :meth:`available`."""
        return pick_splits(self.available(source), wanted, source)

    def available(self, source: str) -> dict[str, object]:
        raise NotImplementedError

    def passed_over(self, source: str) -> list[dict]:
        """Parts of ``source`` that look like data but are no split of it, each ``{"path", "reason"}``."""
        return []

    def load_split(self, split: str, handle: object, options: LoadOptions) -> LoadedSplit:
        raise NotImplementedError

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        return None

    def whole(self, source: str) -> object:
        """The handle of ``source`` read as one dataset (a version): it must hold exactly one split."""
        splits = self.available(source)
        if len(splits) != 1:
            raise refuse_splits(source, list(splits))
        return next(iter(splits.values()))

    def versions(self, source: str) -> list[str]:
        """Names of the versions ``source`` holds (``v1``, ``v2``, ...)."""
        raise LineageError(f"{source} is a {self.name} source: it holds no version folders.")

    def version_source(self, source: str, version: str) -> str:
        return f"{source.rstrip('/')}/{version}"

    def class_names(self, source: str) -> list[str]:
        """Class names of one version without reading its images (for metrics across versions)."""
        return []


def refuse_splits(source: str, splits: list[str]) -> LineageError:
    return LineageError(f"{source} holds the splits {', '.join(splits)}: a version is one dataset of class folders "
                        f"({source}/<class>/<image>), so its images sit one level too deep. Log it with "
                        f"log_hf_dataset, or move the class folders up.")


def pick_splits(available: dict, wanted: str, source: str) -> dict:
    if wanted not in SPLIT_CHOICES:
        raise LineageError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {wanted!r}.")
    if wanted == "all":
        return available
    if wanted not in available:
        raise LineageError(f"split {wanted!r} not found in {source}; splits present: {', '.join(available)}.")
    return {wanted: available[wanted]}


# ---------------------------------------------------------------- kinds whose images are files


def manifest_split(split: str, manifest: Manifest, source: SourceRef, build_dataset: Callable[[], Any] | None = None,
                   prefix: str = "") -> LoadedSplit:
    """A split from the manifest of its image files: class balance over the classes that hold images (an
    empty class folder is listed as left out), the profile, the images as the leakage check names them
    (``prefix`` + path), and the Hugging Face form (``build_dataset``, by default image + ClassLabel)."""
    counts = manifest.class_counts()
    names = [name for name in manifest.classes if counts.get(name)]
    empty = [{"path": name, "reason": "class folder holds no images: not a label of the dataset"}
             for name in manifest.classes if not counts.get(name)]
    records = manifest.records
    profile = image_profile((r.width for r in records), (r.height for r in records), (r.size for r in records),
                            {name: counts[name] for name in names}, manifest.digest)
    return LoadedSplit(split, manifest.digest, {name: counts[name] for name in names}, "rows", "label", source,
                       build_dataset or (lambda: manifest_dataset(manifest, names)), manifest=manifest,
                       ignored=manifest.ignored + empty, profile=profile,
                       list_images=lambda: manifest_images(manifest, split, prefix))


def manifest_images(manifest: Manifest, split: str, prefix: str = "") -> list[SplitImage]:
    """A manifest's images for the leakage check, named ``prefix`` + path, labelled by their class."""
    root = manifest.version_dir.rstrip("/")  # plain strings: a Path per image cost 20 ms at 2,000 images
    return [SplitImage(prefix + r.path, f"{root}/{r.path}", split, r.label) for r in manifest.records]


def manifest_dataset(manifest: Manifest, names: list[str]):
    """The Hugging Face form of a manifest: ``image`` (the files) and ``label`` (a ClassLabel over ``names``)."""
    import datasets

    root = Path(manifest.version_dir)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": [str(root / r.path) for r in manifest.records],
                                       "label": [names.index(r.label) for r in manifest.records]}, features=features)


def spread(values) -> dict | None:
    values = list(values)
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def image_profile(widths, heights, sizes, counts: dict, digest: str, count_key: str = "class_counts") -> dict:
    """What MLflow's Datasets panel shows of image data at a glance (summaries: a few KB at any size)."""
    widths, sizes = list(widths), list(sizes)
    return {"num_images": len(widths), count_key: counts, "image_width": spread(widths),
            "image_height": spread(heights), "bytes": sum(sizes), "digest": digest}


# ---------------------------------------------------------------- label columns


def resolve_targets(dataset, targets: str | None) -> str | None:
    """The label column: ``targets`` when given (it must exist), else ``label`` when there is one."""
    if targets is not None:
        if targets not in dataset.column_names:
            raise LineageError(f"targets column {targets!r} not in the dataset; columns: {', '.join(dataset.column_names)}.")
        return targets
    return "label" if "label" in dataset.column_names else None


def label_counts(dataset, column: str) -> dict[str, int]:
    """Rows per class from the Arrow column (no pandas); ClassLabel ids become names."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401  (pa.compute)

    values = dataset.with_format("arrow")[column]  # honours selections and shuffles (the indices mapping)
    counts = {str(v["values"]): int(v["counts"]) for v in pa.compute.value_counts(values).to_pylist()}
    feature = dataset.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return {name: counts.get(str(i), 0) for i, name in enumerate(feature.names)}
    return dict(sorted(counts.items()))
