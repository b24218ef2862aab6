"""What a dataset source kind is, and the registry that picks one for a ``source`` string.

A kind knows, for one way datasets are stored (an image folder, a COCO folder, a hub dataset, ...):

* ``detect(source)``: whether a ``source`` string (``-P source=...``) is one of its datasets;
* ``splits(source, wanted)``: which splits it holds (``wanted`` is a split name or ``all``);
* ``load_split(split, handle, options)``: one split as a ``datasets.Dataset``, with its content digest
  (through the image pass for image files), its class balance, and the MLflow ``DatasetSource`` that
  describes where it came from;
* ``reload(source_type, source, options)``: the split again from a logged ``DatasetSource`` (its type
  and its JSON dict), or None when that source is not this kind's;
* ``list_images(split, handle, options)``: the split's image files with their labels (or annotations),
  for the leakage check (:mod:`image_lineage.quality`); None where its images are not files.

Adding a kind is one module with a :class:`SourceKind` subclass and one ``register(...)`` line in
``image_lineage/source_kinds/__init__.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mlflow.data.dataset_source import DatasetSource

from image_lineage.core import DatasetError
from image_lineage.quality import QualityImage

LOGGER = logging.getLogger(__name__)

SPLIT_CHOICES = ("all", "train", "validation", "test")


@dataclass
class LoadOptions:
    """How splits are read: hub revision, and what the image pass checks and does with a bad image."""

    revision: str | None = None
    image_check: str = "structure"
    on_bad_image: str = "fail"
    perceptual: bool = False  # compute perceptual hashes in the same read (the leakage check follows)


@dataclass
class LoadedSplit:
    """One split, ready to log: the dataset, its content digest and its class balance."""

    split: str
    dataset: object  # datasets.Dataset
    digest: str  # full sha256 hex
    class_counts: dict[str, int]
    count_kind: str  # "rows" (classification) or "instances" (detection)
    targets: str | None
    mlflow_source: DatasetSource
    ignored: list[dict] = field(default_factory=list)  # files left out, each {"path", "reason"}
    report: dict | None = None  # what a validation found (COCO: boxes out of bounds, zero area, ...)
    profile: dict = field(default_factory=dict)  # the Datasets panel's summary (image_lineage.profiles)
    images: list[QualityImage] | None = None  # its image files, for the leakage check; None where not files


class SourceKind:
    """One kind of dataset source; see the module docstring for the four things a kind does."""

    name = "kind"  # recorded in the run tag dataset.source_kind

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
        raise NotImplementedError

    def list_images(self, split: str, handle: object, options: LoadOptions) -> list[QualityImage] | None:
        return None  # this kind's images are not files the leakage check can read


def pick_splits(available: dict, wanted: str, source: str) -> dict:
    if wanted not in SPLIT_CHOICES:
        raise DatasetError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {wanted!r}.")
    if wanted == "all":
        return available
    if wanted not in available:
        raise DatasetError(f"split {wanted!r} not found in {source}; splits present: {', '.join(available)}.")
    return {wanted: available[wanted]}


KINDS: list[SourceKind] = []


def register(kind: SourceKind) -> SourceKind:
    """Add a kind; kinds are asked in registration order, so a more specific kind registers first."""
    KINDS.append(kind)
    return kind


def unregister(kind: SourceKind) -> None:
    KINDS.remove(kind)


def kind_of(source: str) -> SourceKind:
    """The first registered kind that recognises ``source``, or an error listing what is understood."""
    for kind in KINDS:
        if kind.detect(source):
            return kind
    raise DatasetError(
        f"unknown source {source!r}: pass an image folder (e.g. image_dataset/v2), a COCO folder "
        f"(annotations/instances_<name>.json + <name>/), either under s3://<bucket>/<prefix>, or hub:<name> for a "
        f"Hugging Face hub dataset "
        f"(kinds known: {', '.join(k.name for k in KINDS)})."
    )


def passed_over_folders(source: str, wanted: str = "all") -> list[dict]:
    """What ``split=all`` leaves out of ``source`` (``{"path", "reason"}`` each), logged as a warning; the
    caller records it in the run (tag ``dataset.skipped_folders``). A split asked for by name skips nothing."""
    folders = kind_of(source).passed_over(source) if wanted == "all" else []
    for folder in folders:
        LOGGER.warning("%s/%s is not logged: %s", source, folder["path"], folder["reason"])
    return folders


def reload_split(source_type: str, source: dict, options: LoadOptions | None = None) -> LoadedSplit:
    """A logged split again, by the kind that wrote its ``DatasetSource``."""
    for kind in KINDS:
        loaded = kind.reload(source_type, source, options or LoadOptions())
        if loaded is not None:
            return loaded
    raise DatasetError(f"cannot reload a dataset from a {source_type!r} source.")


def resolve_targets(dataset, targets: str | None) -> str | None:
    """The label column: ``targets`` when given (it must exist), else ``label`` when there is one."""
    if targets is not None:
        if targets not in dataset.column_names:
            raise DatasetError(f"targets column {targets!r} not in the dataset; columns: {', '.join(dataset.column_names)}.")
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


def dataset_name_of(source: str) -> str:
    """A dataset name derived from a source: ``image_dataset/v2`` -> ``image_dataset_v2``, ``hub:a/b`` -> ``a/b``."""
    from pathlib import Path

    if source.startswith("s3://"):  # s3://bucket/cats/v2 -> cats_v2, as the folder cats/v2 is named
        parts = source[len("s3://"):].strip("/").split("/")
        return "_".join(parts[-2:])
    if ":" in source and not Path(source).exists():  # hub:<name> and other scheme-prefixed sources
        return source.split(":", 1)[1]
    path = Path(source).resolve()
    return f"{path.parent.name}_{path.name}" if path.parent.name else path.name
