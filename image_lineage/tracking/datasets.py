"""The MLflow datasets this project logs: each split of an ingestion as a dataset input, with our content digest.

MLflow's own digest for a Hugging Face dataset hashes a pandas view in which images are opaque: two
datasets with different pictures and the same labels get the same digest. Each dataset here carries the
content digest instead (its first 32 hex digits: MLflow refuses more than 36), and a profile a person reads
in the Datasets panel: ``num_images`` (or ``num_rows``), ``class_counts`` (or ``instances_per_category``),
``image_width`` and ``image_height`` as {min, median, max}, ``bytes``, ``digest`` (the full sha256) and,
when the leakage check ran, ``quality_status``. The classes are MLflow's, subclassed, never swapped in.

Three forms: a split's Hugging Face form (:func:`hf_form`), a folder version's manifest table
(:func:`manifest_table`: one row per image), a COCO split's image table (:func:`coco_table`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from functools import cached_property
from typing import Iterator

import mlflow
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.huggingface_dataset import HuggingFaceDataset
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.data.numpy_dataset import NumpyDataset
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.types import ColSpec, Schema

from image_lineage.core.names import digest_prefix
from image_lineage.data.kinds import LoadedSplit
from image_lineage.tracking import _compat

LOGGER = logging.getLogger(__name__)

SCHEMA_SAMPLE_ROWS = 100
# The manifest table's columns never change. MLflow infers a pandas dataset's schema element by element
# (20 ms for 2,000 rows, on the unchanged re-log's critical path), so the schema is given instead.
MANIFEST_SCHEMA = Schema([ColSpec("string", "path"), ColSpec("string", "label"), ColSpec("long", "size"),
                          ColSpec("string", "sha256"), ColSpec("long", "width"), ColSpec("long", "height")])


class ProfileMixin:
    """Adds ``extra_profile`` (set by the constructor) to the profile of the MLflow dataset class it precedes.

    MLflow's own ``num_elements`` (rows times columns: 18 for a manifest of 3 images) is left out: beside
    ``num_images`` it reads as a count of something in the data."""

    extra_profile: dict = {}

    @property
    def profile(self):
        profile = {**(super().profile or {}), **self.extra_profile}
        profile.pop("num_elements", None)
        return profile


def profile_fields(fields: dict | None) -> dict:
    return {k: v for k, v in (fields or {}).items() if v is not None}


class ImageTableDataset(ProfileMixin, PandasDataset):
    """A table with one row per image (a manifest, a COCO split's images), with our profile and, when
    given, a known schema (no per-row inference)."""

    def __init__(self, df, source, targets=None, name=None, digest=None, profile=None, schema=None):
        super().__init__(df=df, source=source, targets=targets, name=name, digest=digest)
        self.extra_profile = profile_fields(profile)
        if schema is not None:
            self.__dict__["schema"] = schema  # PandasDataset.schema is a cached_property: this is its value


class ImageFolderDataset(ImageTableDataset):
    """An image folder (class folders, or ``train*/``, ``val*/``, ``test*/`` splits of them) as an MLflow
    dataset: one row per image (split, path, label, size, sha256, width, height); its digest the content digest
    the entry points log for the same folder; its source the folder (and git commit), whose ``load()`` checks
    that content is still there. ``splits`` keeps what the image pass found (for ``log_dataset``)."""

    def __init__(self, splits: list[LoadedSplit], content_digest: str, source, name=None, digest=None):
        rows = [(s.split, r.path, r.label, r.size, r.sha256, r.width, r.height) for s in splits for r in s.manifest.records]
        table = pd.DataFrame(rows, columns=["split", *(c.name for c in MANIFEST_SCHEMA.inputs)])
        super().__init__(table, source, targets="label", name=name, digest=digest or digest_prefix(content_digest),
                         profile=merged_profile(splits, content_digest),
                         schema=Schema([ColSpec("string", "split"), *MANIFEST_SCHEMA.inputs]))
        self.splits, self.content_digest = splits, content_digest


class CocoDataset(ImageTableDataset):
    """One COCO split as an MLflow dataset: one row per image (image_id, file_name, width, height,
    annotations); its digest the split's content digest (images and annotations), as ``log_hf_dataset`` and
    ``coco_finetune`` log it; its source the annotation file and images folder, checked by ``load()``."""

    def __init__(self, loaded: LoadedSplit, source, name=None, digest=None):
        index = loaded.index
        table = pd.DataFrame([{"image_id": i["id"], "file_name": i["file_name"], "width": i["width"],
                               "height": i["height"], "annotations": len(index.annotations_by_image[i["id"]])}
                              for i in index.images])
        with schema_hints_silenced():
            super().__init__(table, source, name=name, digest=digest or digest_prefix(loaded.digest), profile=loaded.profile)
            self.schema  # noqa: B018  (inferred here, where its hints are silenced)
        self.splits, self.content_digest = [loaded], loaded.digest


def merged_profile(splits: list[LoadedSplit], content_digest: str) -> dict:
    """One profile for several splits: totals, and the images of each split."""
    if len(splits) == 1:
        return {**splits[0].profile, "digest": content_digest}
    counts: dict[str, int] = {}
    for s in splits:
        for name, count in s.class_counts.items():
            counts[name] = counts.get(name, 0) + count
    return {"num_images": sum(s.profile.get("num_images", 0) for s in splits), "class_counts": counts,
            "splits": {s.split: s.profile.get("num_images") for s in splits}, "digest": content_digest}


class ArrayDataset(ProfileMixin, NumpyDataset):
    """Features and labels as arrays (the registry lab's tabular and digit data), with our profile; without
    a ``source``, the code that built them (as ``mlflow.data.from_numpy`` records it)."""

    def __init__(self, features, source=None, targets=None, name=None, digest=None, profile=None):
        super().__init__(features=features, source=source or _compat.code_source(), targets=targets, name=name,
                         digest=digest)
        self.extra_profile = profile_fields(profile)


class ContentDigestDataset(ProfileMixin, HuggingFaceDataset):
    """MLflow's ``HuggingFaceDataset``, as ``mlflow.data.from_huggingface`` makes it, with three changes:

    * the schema's types come from the first ``SCHEMA_SAMPLE_ROWS`` rows, not 10,000 rows converted to
      pandas (for embedded images that is hundreds of MB copied into Python objects to learn what the
      first rows already say), and each column's nullability from Arrow's null counts over every row;
    * :func:`from_huggingface` fills ``config_name`` and ``split`` of the source from the dataset, as
      MLflow does, and refuses a ``DatasetDict`` with MLflow's own error;
    * the profile adds ours (``profile=``).

    Everything else (digest when none is given, JSON form, evaluation dataset) is MLflow's; the tests run
    MLflow's own Hugging Face dataset tests against both.
    """

    def __init__(self, ds, source, targets=None, name=None, digest=None, profile=None):
        require_dataset(ds)  # MLflow checks this in from_huggingface only: a DatasetDict fails later, unclearly
        super().__init__(ds=ds, source=source, targets=targets, name=name, digest=digest)
        self.extra_profile = profile_fields(profile)

    @cached_property
    def schema(self):
        sample = self.ds.select(range(min(SCHEMA_SAMPLE_ROWS, self.ds.num_rows)))
        try:
            schema = _compat.infer_schema(sample.to_pandas())
        except Exception as exc:  # as MLflow does: a dataset without a schema still logs
            LOGGER.warning("Failed to infer schema for Hugging Face dataset. Exception: %s", exc)
            return None
        nulls = null_counts(self.ds)
        return Schema([ColSpec(spec.type, spec.name, required=nulls.get(spec.name, 0) == 0) for spec in schema.inputs])


def require_dataset(ds) -> None:
    """MLflow's error (same type and words) for anything but a ``datasets.Dataset``, e.g. a ``DatasetDict``."""
    import datasets

    if not isinstance(ds, datasets.Dataset):
        raise MlflowException(
            f"The specified Hugging Face dataset must be an instance of `datasets.Dataset`."
            f" Instead, found an instance of: {type(ds)}", _compat.invalid_parameter_code(),
        )


def null_counts(dataset) -> dict[str, int]:
    """Nulls per column over every row, from Arrow's counts (free unless a selection hides some rows)."""
    table = dataset.data.table
    counts = {name: table.column(name).null_count for name in dataset.column_names}
    if _compat.selection_indices(dataset) is not None:  # only the selected rows count: recount columns with nulls
        for name in [n for n, c in counts.items() if c]:
            counts[name] = sum(batch.column(0).null_count for batch in
                               dataset.select_columns([name]).with_format("arrow").iter(batch_size=10000))
    return counts


def from_huggingface(ds, path=None, targets=None, data_dir=None, data_files=None, revision=None, name=None,
                     digest=None, trust_remote_code=None, source=None, profile=None) -> ContentDigestDataset:
    """``mlflow.data.from_huggingface``'s signature and rules, returning a :class:`ContentDigestDataset`."""
    require_dataset(ds)
    if source is None and path is not None:
        source = HuggingFaceDatasetSource(path=path, config_name=ds.config_name, data_dir=data_dir, data_files=data_files,
                                          split=ds.split, revision=revision, trust_remote_code=trust_remote_code)
    elif source is None:
        source = _compat.code_source()
    elif isinstance(source, HuggingFaceDatasetSource) and source.config_name is None:
        source.config_name = ds.config_name  # what MLflow records for a source it builds itself
    return ContentDigestDataset(ds=ds, source=source, targets=targets, name=name, digest=digest, profile=profile)


@contextlib.contextmanager
def schema_hints_silenced() -> Iterator[None]:
    """MLflow hints that integer columns cannot hold missing values whenever it infers a dataset
    schema: true, and irrelevant to the manifests and image tables logged here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        yield


# ---------------------------------------------------------------- the three forms of a split


def hf_form(loaded: LoadedSplit, name: str, source: DatasetSource, quality_status: str | None = None) -> ContentDigestDataset:
    """A split's Hugging Face form, named ``<name>_<split>``."""
    return from_huggingface(loaded.dataset, targets=loaded.targets, source=source, name=f"{name}_{loaded.split}",
                            digest=digest_prefix(loaded.digest), profile={**loaded.profile, "quality_status": quality_status})


def manifest_table(loaded: LoadedSplit, name: str, source: DatasetSource, quality_status: str | None = None) -> ImageTableDataset:
    """A folder version's manifest: one row per image (path, label, size, sha256, width, height)."""
    table = pd.DataFrame([vars(r) for r in loaded.manifest.records])
    return ImageTableDataset(table, source, targets="label", name=name, digest=digest_prefix(loaded.digest),
                             profile={**loaded.profile, "class_counts": loaded.manifest.class_counts(),
                                      "quality_status": quality_status}, schema=MANIFEST_SCHEMA)


def coco_table(loaded: LoadedSplit, name: str, source: DatasetSource, quality_status: str | None = None) -> ImageTableDataset:
    """A COCO split's images: one row per image (image_id, file_name, width, height, annotations)."""
    index = loaded.index
    table = pd.DataFrame([{"image_id": i["id"], "file_name": i["file_name"], "width": i["width"], "height": i["height"],
                           "annotations": len(index.annotations_by_image[i["id"]])} for i in index.images])
    with schema_hints_silenced():
        dataset = ImageTableDataset(table, source, name=f"{name}_{loaded.split}", digest=digest_prefix(loaded.digest),
                                    profile={**loaded.profile, "quality_status": quality_status})
        dataset.schema  # noqa: B018  (inferred here, where its hints are silenced)
    return dataset


def log_inputs(run_id: str, inputs: list[tuple[object, str, dict[str, str]]]) -> None:
    """Dataset inputs ``(dataset, context, tags)`` of run ``run_id``, in one request (sent with an explicit run
    id, so it can go out beside the run's other requests)."""
    with schema_hints_silenced():
        entries = [DatasetInput(_compat.dataset_entity(dataset),
                                [InputTag(_compat.DATASET_CONTEXT_TAG, context), *(InputTag(k, v) for k, v in tags.items())])
                   for dataset, context, tags in inputs]
    mlflow.MlflowClient().log_inputs(run_id, datasets=entries)
