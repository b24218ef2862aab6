"""Hugging Face dataset lineage: log image datasets with ``mlflow.data.from_huggingface`` + ``log_input``.

Three kinds of source, each loaded as one ``datasets.Dataset`` per split:

* an image folder version (``image_dataset/v2``): the ``imagefolder`` builder, label = ClassLabel from the
  parent folder; a folder with ``train*/`` and ``val*/`` sub-folders gives two splits;
* a COCO folder (``annotations/instances_<name>.json`` + ``<name>/``): :func:`image_lineage.coco.coco_to_hf`;
* a hub dataset ``hub:<name>`` (``split``, ``revision``), for users with internet.

MLflow's own digest for these datasets hashes a pandas view in which images are opaque: two datasets with
different pictures and the same labels get the same digest. Each split here gets a content digest instead
(the folder manifest; images + annotations for COCO; the Arrow data, streamed, for hub datasets) passed as
``digest=``, and a source from which :func:`load_logged_dataset` reloads exactly what was logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.huggingface_dataset import HuggingFaceDataset
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.types.utils import _infer_schema as infer_schema

from image_lineage import coco
from image_lineage.folder_dataset import DIGEST_PREFIX_LEN, TAG_DIGEST, is_auto
from image_lineage.manifest import DatasetError, scan_version
from image_lineage.plots import plot_class_counts
from image_lineage.sources import CocoDatasetSource
from image_lineage.tracking import log_values, schema_hints_silenced, start_run, upload_folder

LOGGER = logging.getLogger(__name__)

SPLIT_CHOICES = ("all", "train", "validation", "test")
CONTEXT_CHOICES = ("training", "validation", "testing")
HUB_PREFIX = "hub:"
IMAGEFOLDER = "imagefolder"
ARROW_BATCH_ROWS = 1000
SCHEMA_SAMPLE_ROWS = 100


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


@dataclass
class HfRequest:
    source: str
    split: str = "all"
    name: str = "auto"  # dataset name in the Datasets panel; auto derives it from the source
    targets: str = "auto"  # label column; auto: "label" for folders, none for COCO
    context: str = "training"
    revision: str = "main"  # hub datasets only
    run_name: str = "auto"
    experiment_name: str | None = None


# ---------------------------------------------------------------- loading


def source_kind(source: str) -> str:
    if source.startswith(HUB_PREFIX):
        return "hub"
    path = Path(source)
    if path.is_dir():
        return "coco" if coco.is_coco_dir(path) else "folder"
    raise DatasetError(
        f"unknown source {source!r}: pass an image folder (e.g. image_dataset/v2), a COCO folder "
        f"(annotations/instances_<name>.json + <name>/), or hub:<name> for a Hugging Face hub dataset."
    )


def load_splits(source: str, split: str = "all", revision: str = "main", targets: str = "auto") -> list[LoadedSplit]:
    """Every requested split of ``source``; ``split=all`` takes each split the source has."""
    if split not in SPLIT_CHOICES:
        raise DatasetError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}.")
    kind = source_kind(source)
    if kind == "hub":
        return [load_hub_split(source[len(HUB_PREFIX):], "train" if split == "all" else split, revision, targets)]
    if kind == "coco":
        available = coco.find_coco_splits(source)
        loaded = [load_coco_split(s) for s in pick_splits(available, split, source).values()]
    else:
        available = folder_splits(Path(source))
        loaded = [load_folder_split(path, name) for name, path in pick_splits(available, split, source).items()]
    for one in loaded:
        one.targets = resolve_targets(one.dataset, targets) if not is_auto(targets) else one.targets
    return loaded


def pick_splits(available: dict, split: str, source: str) -> dict:
    if split == "all":
        return available
    if split not in available:
        raise DatasetError(f"split {split!r} not found in {source}; splits present: {', '.join(available)}.")
    return {split: available[split]}


def folder_splits(folder: Path) -> dict[str, Path]:
    """``train*/``, ``val*/``, ``test*/`` sub-folders are splits; otherwise the folder is one train split."""
    subfolders = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    splits = {coco.split_name(p.name): p for p in subfolders if coco.split_name(p.name) in SPLIT_CHOICES}
    return splits if splits and len(splits) == len(subfolders) else {"train": folder}


def load_folder_split(path: Path, split: str) -> LoadedSplit:
    """An image folder through the ``imagefolder`` builder; the digest is the folder manifest's."""
    import datasets

    manifest = scan_version(path, root=path)
    # drop_labels=False: a single class folder still gives a label column (imagefolder drops it otherwise)
    dataset = datasets.load_dataset(IMAGEFOLDER, data_dir=str(path.resolve()), split="train", drop_labels=False)
    source = HuggingFaceDatasetSource(path=IMAGEFOLDER, data_dir=str(path.resolve()), split="train")
    counts = {name: count for name, count in manifest.class_counts().items()}
    return LoadedSplit(split, dataset, manifest.digest, counts, "rows", "label", source)


def load_coco_split(coco_split: coco.CocoSplit, index: coco.CocoIndex | None = None) -> LoadedSplit:
    """A COCO split (or the given ``index`` of it, e.g. a subset) in its Hugging Face form."""
    index = index or coco.index_split(coco_split)
    dataset = coco.coco_to_hf(index)
    source = CocoDatasetSource.from_split(coco_split)
    return LoadedSplit(
        coco_split.split, dataset, coco.compute_coco_digest(index), coco.instances_per_category(index), "instances", None, source
    )


def load_hub_split(name: str, split: str, revision: str, targets: str = "auto") -> LoadedSplit:
    """A hub dataset; offline (or unreachable) it fails naming the local-folder alternative."""
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split, revision=revision or None)
    except Exception as exc:  # datasets raises many types here (ConnectionError, OSError, HfHubHTTPError, ...)
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        reason = "offline mode is on (HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1)" if offline else f"{type(exc).__name__}: {exc}"
        raise DatasetError(
            f"hub dataset {name!r} (split {split!r}, revision {revision!r}) could not be loaded: {reason}. "
            f"Without internet, use a local copy: -P source=<image folder> or -P source=<COCO folder>."
        ) from exc
    label = resolve_targets(dataset, targets)
    counts = label_counts(dataset, label) if label else {}
    source = HuggingFaceDatasetSource(path=name, split=split, revision=revision or None)
    return LoadedSplit(split, dataset, compute_arrow_digest(dataset), counts, "rows", label, source)


def resolve_targets(dataset, targets: str) -> str | None:
    if not is_auto(targets):
        if targets not in dataset.column_names:
            raise DatasetError(f"targets column {targets!r} not in the dataset; columns: {', '.join(dataset.column_names)}.")
        return targets
    return "label" if "label" in dataset.column_names else None


def label_counts(dataset, column: str) -> dict[str, int]:
    """Rows per class from the Arrow column (no pandas); ClassLabel ids become names."""
    import datasets

    values = dataset.with_format("arrow")[column]  # honours selections and shuffles (the indices mapping)
    counts = {str(v["values"]): int(v["counts"]) for v in pa.compute.value_counts(values).to_pylist()}
    feature = dataset.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return {name: counts.get(str(i), 0) for i, name in enumerate(feature.names)}
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------- digests


def compute_arrow_digest(dataset) -> str:
    """sha256 of a dataset's rows, streamed in Arrow batches (never the whole table in pandas).

    Each batch goes through Arrow's IPC writer straight into the hash (embedded image bytes included,
    no Python object per row). Image cells that hold only a file path (how ``datasets`` keeps local
    images) are hashed by the file's bytes, so a changed picture changes the digest even when its
    path does not.
    """
    import datasets

    image_columns = [name for name, f in dataset.features.items() if isinstance(f, datasets.Image)]
    digest = hashlib.sha256(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    sink = pa.PythonFile(HashSink(digest), mode="w")
    for table in dataset.with_format("arrow").iter(batch_size=ARROW_BATCH_ROWS):
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        for column in image_columns:
            for path in paths_without_bytes(table.column(column)):
                digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


class HashSink:
    """A write-only file object that feeds a hash (for ``pa.PythonFile``)."""

    def __init__(self, digest):
        self.digest = digest
        self.closed = False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def paths_without_bytes(column: pa.ChunkedArray) -> list[str]:
    """Paths of image cells whose bytes are not embedded."""
    missing = pa.compute.and_(
        pa.compute.is_null(pa.compute.struct_field(column, "bytes")),
        pa.compute.is_valid(pa.compute.struct_field(column, "path")),
    )
    if not pa.compute.any(missing).as_py():
        return []
    return pa.compute.filter(pa.compute.struct_field(column, "path"), missing).to_pylist()


def combined_digest(digests: dict[str, str]) -> str:
    """One digest for several splits ({split: digest}); a single split keeps its own."""
    if len(digests) == 1:
        return next(iter(digests.values()))
    return hashlib.sha256("".join(f"{split}:{digest}\n" for split, digest in digests.items()).encode()).hexdigest()


# ---------------------------------------------------------------- logging


def default_name(source: str) -> str:
    if source.startswith(HUB_PREFIX):
        return source[len(HUB_PREFIX):]
    path = Path(source).resolve()
    return f"{path.parent.name}_{path.name}" if path.parent.name else path.name


def log_hf_dataset(request: HfRequest) -> tuple[str, list[LoadedSplit]]:
    """Load every requested split and log it as a dataset input of one run; return (run id, splits)."""
    if request.context not in CONTEXT_CHOICES:
        raise DatasetError(f"context must be one of {', '.join(CONTEXT_CHOICES)}, got {request.context!r}.")
    splits = load_splits(request.source, request.split, request.revision, request.targets)
    name = default_name(request.source) if is_auto(request.name) else request.name
    run_name = f"hf_{name}" if is_auto(request.run_name) else request.run_name
    with start_run(request.experiment_name, run_name) as run:
        for loaded in splits:
            log_split_input(loaded, name, request.context)
        log_split_files(splits)
        log_split_summary(run, splits, request.source)
    return run.info.run_id, splits


class SampledSchemaDataset(HuggingFaceDataset):
    """``HuggingFaceDataset`` whose MLflow schema is inferred from the first rows only.

    MLflow infers the schema from up to 10,000 rows converted to pandas: for an image dataset with
    embedded bytes that is hundreds of MB copied into Python objects, to learn what the ``features``
    of the first rows already say.
    """

    @cached_property
    def schema(self):
        sample = self.ds.select(range(min(SCHEMA_SAMPLE_ROWS, self.ds.num_rows)))
        try:
            return infer_schema(sample.to_pandas())
        except Exception as exc:  # as MLflow does: a dataset without a schema still logs
            LOGGER.warning("no MLflow schema for this dataset: %s", exc)
            return None


def log_split_input(loaded: LoadedSplit, name: str, context: str) -> None:
    with schema_hints_silenced():
        dataset = SampledSchemaDataset(
            ds=loaded.dataset,
            targets=loaded.targets,
            source=loaded.mlflow_source,
            name=f"{name}_{loaded.split}",
            digest=loaded.digest[:DIGEST_PREFIX_LEN],
        )
        mlflow.log_input(dataset, context=context, tags={"split": loaded.split})


def metric_key(split: str, kind: str, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return f"{split}/{kind}_{safe}"


def log_split_summary(run: mlflow.ActiveRun, splits: list[LoadedSplit], source: str) -> None:
    """Params, metrics and tags in one ``log_batch``."""
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
    tags = {TAG_DIGEST: combined_digest({s.split: s.digest for s in splits}), "dataset.source_kind": source_kind(source)}
    tags.update({f"{TAG_DIGEST}.{s.split}": s.digest for s in splits})
    log_values(run, params, metrics, tags)


def log_split_files(splits: list[LoadedSplit]) -> None:
    """Per split: ``hf/<split>/features.json`` (features, info, digest) and ``class_balance.png``."""
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
    prefix = digest[:DIGEST_PREFIX_LEN]
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
    if loaded.digest[:DIGEST_PREFIX_LEN] != dataset.digest:
        raise DatasetError(
            f"the data behind run {run_id}'s dataset {dataset.name!r} changed since it was logged "
            f"(digest {dataset.digest} then, {loaded.digest[:DIGEST_PREFIX_LEN]} now)."
        )
    return loaded.dataset


def reload_split(source_type: str, source: dict) -> LoadedSplit:
    if source_type == CocoDatasetSource._get_source_type():
        return load_coco_split(CocoDatasetSource.from_dict(source).to_split())
    if source_type == "hugging_face" and source.get("path") == IMAGEFOLDER:
        return load_folder_split(Path(source["data_dir"]), source.get("split") or "train")
    if source_type == "hugging_face":
        return load_hub_split(source["path"], source.get("split") or "train", source.get("revision") or "main")
    raise DatasetError(f"cannot reload a dataset from a {source_type!r} source.")
