"""Hugging Face dataset lineage: log image datasets with ``mlflow.data`` + ``log_input``, one input per split.

Where the data comes from is a source kind (:mod:`image_lineage.source_kinds`): an image folder version
(``image_dataset/v2``), a COCO folder, a hub dataset ``hub:<name>``, or any kind registered there. Each
kind loads one ``datasets.Dataset`` per split with a content digest and an MLflow ``DatasetSource``; this
module logs them the same way whatever the kind.

MLflow's own digest for these datasets hashes a pandas view in which images are opaque: two datasets with
different pictures and the same labels get the same digest. Each split here gets a content digest instead,
passed as ``digest=``, and a source from which :func:`load_logged_dataset` reloads exactly what was logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mlflow
from mlflow.data.huggingface_dataset import HuggingFaceDataset
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema
from mlflow.types.utils import _infer_schema as infer_schema

from image_lineage.arrow_digest import compute_arrow_digest  # noqa: F401  (public name: the hub kind's digest)
from image_lineage.core import (
    ON_BAD_IMAGE_CHOICES, TAG_DIGEST, TAG_IGNORED, TAG_SKIPPED_FOLDERS, TAG_SOURCE_KIND, TAG_SOURCE_URI, DatasetError, digest_prefix,
)
from image_lineage.dataset_check import check_in_run
from image_lineage.object_store import is_object_uri
from image_lineage.plots import plot_class_counts
from image_lineage.profiles import with_profile
from image_lineage.quality import require_on_leakage
from image_lineage.snapshot import find_holder, link_tags, mark_shared
from image_lineage.source_kinds import SPLIT_CHOICES, LoadedSplit, LoadOptions, kind_of, reload_split, resolve_targets
from image_lineage.source_kinds.base import dataset_name_of, passed_over_folders
from image_lineage.tracking import log_values, schema_hints_silenced, start_run, upload_folder

LOGGER = logging.getLogger(__name__)

CONTEXT_CHOICES = ("training", "validation", "testing")
SCHEMA_SAMPLE_ROWS = 100


@dataclass
class HfRequest:
    source: str = "image_dataset/v2"
    split: str = "all"
    name: str | None = None  # dataset name in the Datasets panel; None derives it from the source
    targets: str | None = None  # label column; None: "label" when the dataset has one
    context: str = "training"
    revision: str = "main"  # hub datasets only: branch, tag or commit
    image_check: str = "structure"
    on_bad_image: str = "fail"
    quality_check: str = "on"  # the leakage check over every split (image folders and COCO folders)
    on_leakage: str = "warn"
    run_name: str | None = None  # None: hf_<name>
    experiment_name: str | None = None


# ---------------------------------------------------------------- loading


def load_splits(source: str, split: str = "all", options: LoadOptions | None = None, targets: str | None = None) -> list[LoadedSplit]:
    """Every requested split of ``source``; ``split=all`` takes each split the source has."""
    if split not in SPLIT_CHOICES:
        raise DatasetError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}.")
    options = options or LoadOptions()
    if options.on_bad_image not in ON_BAD_IMAGE_CHOICES:
        raise DatasetError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE_CHOICES)}, got {options.on_bad_image!r}.")
    kind = kind_of(source)
    loaded = [kind.load_split(name, handle, options) for name, handle in kind.splits(source, split).items()]
    if targets is not None:
        for one in loaded:
            one.targets = resolve_targets(one.dataset, targets)
    return loaded


def combined_digest(digests: dict[str, str]) -> str:
    """One digest for several splits ({split: digest}); a single split keeps its own."""
    if len(digests) == 1:
        return next(iter(digests.values()))
    return hashlib.sha256("".join(f"{split}:{digest}\n" for split, digest in digests.items()).encode()).hexdigest()


# ---------------------------------------------------------------- logging


def log_hf_dataset(request: HfRequest) -> tuple[str, list[LoadedSplit]]:
    """Load every requested split and log it as a dataset input of one run; return (run id, splits)."""
    if request.context not in CONTEXT_CHOICES:
        raise DatasetError(f"context must be one of {', '.join(CONTEXT_CHOICES)}, got {request.context!r}.")
    require_on_leakage(request.on_leakage)
    checking = request.quality_check == "on"
    options = LoadOptions(request.revision, request.image_check, request.on_bad_image, perceptual=checking)
    splits = load_splits(request.source, request.split, options, request.targets)
    passed_over = passed_over_folders(request.source, request.split)
    images = [image for s in splits for image in s.images] if checking and all(s.images is not None for s in splits) else None
    if checking and images is None:
        LOGGER.info("leakage check skipped: %s sources hold no image files to read", kind_of(request.source).name)
    name = request.name or dataset_name_of(request.source)
    run_name = request.run_name or f"hf_{name}"
    with start_run(request.experiment_name, run_name) as run:
        # first: with on_leakage=fail the run stops here, its report logged and nothing else
        quality = check_in_run(run, images, request.image_check, request.on_leakage) if images else None
        for loaded in splits:
            log_split_input(loaded, name, request.context, quality.status if quality else None)
        log_split_files(splits)
        log_split_summary(run, splits, request.source, passed_over, stored_files_tags(run, splits))
    return run.info.run_id, splits


def stored_files_tags(run: mlflow.ActiveRun, splits: list[LoadedSplit]) -> dict[str, str]:
    """This run stores no images; when a run on the server holds the files of the same digest (a folder
    version, a ``coco_finetune`` dataset), the tags that say where they are (:mod:`image_lineage.snapshot`)."""
    holder = find_holder(combined_digest({s.split: s.digest for s in splits}), run.info.experiment_id)
    if holder is None:
        return {}
    mark_shared(holder)
    return link_tags(holder)


class ContentDigestDataset(HuggingFaceDataset):
    """MLflow's ``HuggingFaceDataset``, as ``mlflow.data.from_huggingface`` makes it, with two changes:

    * the schema's types come from the first ``SCHEMA_SAMPLE_ROWS`` rows, not 10,000 rows converted to
      pandas (for embedded images that is hundreds of MB copied into Python objects to learn what the
      first rows already say), and each column's nullability from Arrow's null counts over every row;
    * :func:`from_huggingface` fills ``config_name`` and ``split`` of the source from the dataset, as
      MLflow does, and refuses a ``DatasetDict`` with MLflow's own error.

    Everything else (digest when none is given, profile, JSON form, evaluation dataset) is MLflow's; the
    tests run MLflow's own Hugging Face dataset tests against both.
    """

    def __init__(self, ds, source, targets=None, name=None, digest=None):
        require_dataset(ds)  # MLflow checks this in from_huggingface only: a DatasetDict fails later, unclearly
        super().__init__(ds=ds, source=source, targets=targets, name=name, digest=digest)

    @cached_property
    def schema(self):
        sample = self.ds.select(range(min(SCHEMA_SAMPLE_ROWS, self.ds.num_rows)))
        try:
            schema = infer_schema(sample.to_pandas())
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
            f" Instead, found an instance of: {type(ds)}", INVALID_PARAMETER_VALUE,
        )


def null_counts(dataset) -> dict[str, int]:
    """Nulls per column over every row, from Arrow's counts (free unless a selection hides some rows)."""
    table = dataset.data.table
    counts = {name: table.column(name).null_count for name in dataset.column_names}
    if dataset._indices is not None:  # only the selected rows count: recount the columns that have nulls
        for name in [n for n, c in counts.items() if c]:
            counts[name] = sum(batch.column(0).null_count for batch in
                               dataset.select_columns([name]).with_format("arrow").iter(batch_size=10000))
    return counts


def from_huggingface(ds, path=None, targets=None, data_dir=None, data_files=None, revision=None, name=None,
                     digest=None, trust_remote_code=None, source=None) -> ContentDigestDataset:
    """``mlflow.data.from_huggingface``'s signature and rules, returning a :class:`ContentDigestDataset`."""
    require_dataset(ds)
    if source is None and path is not None:
        source = HuggingFaceDatasetSource(path=path, config_name=ds.config_name, data_dir=data_dir, data_files=data_files,
                                          split=ds.split, revision=revision, trust_remote_code=trust_remote_code)
    elif source is None:
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.tracking.context import registry

        source = CodeDatasetSource(tags=registry.resolve_tags())
    elif isinstance(source, HuggingFaceDatasetSource) and source.config_name is None:
        source.config_name = ds.config_name  # what MLflow records for a source it builds itself
    return ContentDigestDataset(ds=ds, source=source, targets=targets, name=name, digest=digest)


def log_split_input(loaded: LoadedSplit, name: str, context: str, quality_status: str | None = None) -> ContentDigestDataset:
    with schema_hints_silenced():
        dataset = from_huggingface(
            loaded.dataset, targets=loaded.targets, source=loaded.mlflow_source, name=f"{name}_{loaded.split}",
            digest=digest_prefix(loaded.digest),
        )
        with_profile(dataset, {**loaded.profile, "quality_status": quality_status})
        mlflow.log_input(dataset, context=context, tags={"split": loaded.split})
    return dataset


def metric_key(split: str, kind: str, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return f"{split}/{kind}_{safe}"


def log_split_summary(run: mlflow.ActiveRun, splits: list[LoadedSplit], source: str, passed_over: list[dict],
                      extra_tags: dict[str, str]) -> None:
    """Params, metrics and tags (``extra_tags`` too) in one ``log_batch``; ``passed_over``: folders of the
    source not logged."""
    names = list(dict.fromkeys(n for s in splits for n in s.class_counts))  # label order, first split first
    params = {
        "num_rows": str(sum(len(s.dataset) for s in splits)),
        "num_classes": str(len(names)),
        "class_names": json.dumps(names),
        "features": json.dumps(splits[0].dataset.features.to_dict()),
        "splits": json.dumps([s.split for s in splits]),
    }
    metrics = {}
    for s in splits:
        metrics[f"{s.split}/num_rows"] = len(s.dataset)
        metrics.update({metric_key(s.split, s.count_kind, n): c for n, c in s.class_counts.items()})
    tags = {TAG_DIGEST: combined_digest({s.split: s.digest for s in splits}), TAG_SOURCE_KIND: kind_of(source).name}
    if is_object_uri(source):
        tags[TAG_SOURCE_URI] = source
    tags.update({f"{TAG_DIGEST}.{s.split}": s.digest for s in splits})
    tags[TAG_IGNORED] = str(sum(len(s.ignored) for s in splits))
    if passed_over:
        tags[TAG_SKIPPED_FOLDERS] = json.dumps(passed_over)
    log_values(run, params, metrics, {**tags, **extra_tags})


def log_split_files(splits: list[LoadedSplit]) -> None:
    """Per split: ``hf/<split>/features.json`` (features, info, digest), ``class_balance.png``, and when
    there is something to say ``ignored_files.json`` (files left out, and why) and ``validation_report.json``."""
    with tempfile.TemporaryDirectory(prefix="hf_lineage_") as staging:
        for s in splits:
            folder = Path(staging) / "hf" / s.split
            folder.mkdir(parents=True)
            info = {
                "split": s.split,
                "num_rows": len(s.dataset),
                "digest": s.digest,
                "features": s.dataset.features.to_dict(),
                "info": dataset_info(s.dataset),
                "class_counts": s.class_counts,
            }
            (folder / "features.json").write_text(json.dumps(info, indent=1, default=str))
            if s.ignored:
                (folder / "ignored_files.json").write_text(json.dumps(s.ignored, indent=1))
            if s.report is not None:
                (folder / "validation_report.json").write_text(json.dumps(s.report, indent=1))
            if s.class_counts:
                plot_class_counts(s.class_counts, folder / "class_balance.png", f"{s.split}: {s.count_kind} per class")
        upload_folder(staging)


def dataset_info(dataset) -> dict:
    info = dataset.info
    return {"builder_name": info.builder_name, "config_name": info.config_name, "version": str(info.version),
            "description": info.description, "homepage": info.homepage}


# ---------------------------------------------------------------- lineage queries


def find_runs_by_digest(digest: str, experiment_names: list[str] | None = None) -> list[mlflow.entities.Run]:
    """Runs whose dataset inputs carry ``digest`` (full sha256 or its 32-digit prefix), oldest first."""
    prefix = digest_prefix(digest)
    return mlflow.search_runs(
        experiment_names=experiment_names,
        search_all_experiments=experiment_names is None,
        filter_string=f"datasets.digest = '{prefix}'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )


def load_logged_dataset(run_id: str, split: str | None = None):
    """Reload the exact ``datasets.Dataset`` a run logged; fails when the data changed since.

    The run's dataset input names the source (imagefolder data_dir, COCO files, or hub path and
    revision); the reloaded data must have the digest the run recorded.
    """
    run = mlflow.get_run(run_id)
    inputs = [i for i in run.inputs.dataset_inputs if split is None or {t.key: t.value for t in i.tags}.get("split") == split]
    if not inputs:
        raise LookupError(f"run {run_id} has no dataset input{f' for split {split!r}' if split else ''}.")
    dataset = inputs[0].dataset
    loaded = reload_split(dataset.source_type, json.loads(dataset.source))
    if digest_prefix(loaded.digest) != dataset.digest:
        raise DatasetError(
            f"the data behind run {run_id}'s dataset {dataset.name!r} changed since it was logged "
            f"(digest {dataset.digest} then, {digest_prefix(loaded.digest)} now)."
        )
    return loaded.dataset
