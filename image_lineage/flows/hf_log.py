"""Log an image dataset in its Hugging Face form: one run, one dataset input per split, each with a content digest.

Where the data comes from is a source kind (:mod:`image_lineage.data.kinds`): an image folder version
(``image_dataset/v2``), a COCO folder, a hub dataset ``hub:<name>``, an ``s3://`` prefix of either, or any
kind registered there. The stages are the ingestion path's (:mod:`image_lineage.flows.ingest`); this run
stores no images: when a run on the server holds the files of the same digest (a folder version, a
``coco_finetune`` dataset), it links to them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import mlflow

from image_lineage.core.names import require_choice
from image_lineage.data.coco.index import split_manifest
from image_lineage.data.croissant import CROISSANT_NAME, FileSplit, HubSplit, hf_metadata, metadata_text, read_card
from image_lineage.data.kinds import LoadedSplit, LoadOptions, dataset_name_of
from image_lineage.flows.charts import plot_class_counts
from image_lineage.flows.ingest import (
    Ingestion, check_in_run, digest_tags, log_split_inputs, read_source, source_tags, split_inputs,
)
from image_lineage.quality.gate import require_on_leakage
from image_lineage.tracking.runs import log_values, start_run
from image_lineage.tracking.snapshots import find_holder, store_or_link

LOGGER = logging.getLogger(__name__)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # s3://..., dbfs:/..., a registered kind's own scheme

CONTEXT_CHOICES = ("training", "validation", "testing")


@dataclass
class HfRequest:
    source: str = "image_dataset/v2"
    split: str = "all"
    name: str | None = None  # dataset name in the Datasets panel; None derives it from the source
    targets: str | None = None  # label column; None: "label" when the dataset has one
    context: str = "training"
    revision: str = "main"  # hub datasets only: branch, tag or commit
    image_check: str = "structure"
    engine: str = "local"  # where the image pass runs: local (this machine) or spark (a Spark job)
    on_bad_image: str = "fail"
    quality_check: str = "on"  # the leakage check over every split (image folders and COCO folders)
    on_leakage: str = "warn"
    run_name: str | None = None  # None: hf_<name>
    experiment_name: str | None = None


def log_hf_dataset(request: HfRequest) -> tuple[str, list[LoadedSplit]]:
    """Read every requested split and log it as a dataset input of one run; return (run id, splits)."""
    require_choice("context", request.context, CONTEXT_CHOICES)
    require_on_leakage(request.on_leakage)
    checking = request.quality_check == "on"
    options = LoadOptions(request.revision, request.image_check, request.on_bad_image, perceptual=checking,
                          engine=request.engine)
    ingestion = read_source(request.source, request.split, options, request.targets)
    images = ingestion.images if checking else None
    if checking and images is None:
        LOGGER.info("leakage check skipped: %s sources hold no image files to read", ingestion.kind)
    name = request.name or dataset_name_of(request.source)
    manifests = split_manifests(ingestion.splits)
    root = data_root(manifests)
    card = read_card(root) if root is not None else {}  # a bad croissant.yaml stops before the run
    with start_run(request.experiment_name, request.run_name or f"hf_{name}", job="log_hf_dataset",
                   reads=ingestion.reads) as run:
        # first: with on_leakage=fail the run stops here, its report logged and nothing else
        quality = check_in_run(run, images, request.image_check, request.on_leakage, engine=request.engine) if images else None
        log_split_inputs(run.info.run_id, split_inputs(ingestion.splits, name, "hf", quality and quality.status,
                                                       context=request.context))
        snapshot_tags = store_or_link(ingestion.digest, find_holder(ingestion.digest, run.info.experiment_id),
                                      stage_data=None, stage_own=lambda folder: stage_split_files(ingestion, manifests, name, card, folder))
        log_split_summary(run, ingestion, snapshot_tags)
    return run.info.run_id, ingestion.splits


def metric_key(split: str, kind: str, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return f"{split}/{kind}_{safe}"


def log_split_summary(run: mlflow.ActiveRun, ingestion: Ingestion, extra_tags: dict[str, str]) -> None:
    """Params, metrics and tags (``extra_tags`` too) in one ``log_batch``."""
    splits = ingestion.splits
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
    log_values(run, params, metrics, {**digest_tags(splits), **source_tags(ingestion), **extra_tags})


def stage_split_files(ingestion: Ingestion, manifests: dict, name: str, card: dict, staging: Path) -> None:
    """Per split: ``hf/<split>/features.json`` (features, info, digest), ``manifest.json[.gz]`` (each image file's
    sha256, for splits read from files), ``class_balance.png``, and when
    there is something to say ``ignored_files.json`` (files left out, and why) and ``validation_report.json``;
    ``croissant.json`` (:func:`hf_croissant`). ``manifests``: :func:`split_manifests`."""
    for s in ingestion.splits:
        folder = staging / "hf" / s.split
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
        manifest = manifests.get(s.split)
        if manifest is not None:  # each image's sha256: what trace finds it by
            stored_name, data = manifest.stored()
            (folder / stored_name).write_bytes(data)
        if s.ignored:
            (folder / "ignored_files.json").write_text(json.dumps(s.ignored, indent=1))
        if s.report is not None:
            (folder / "validation_report.json").write_text(json.dumps(s.report, indent=1))
        if s.class_counts:
            plot_class_counts(s.class_counts, folder / "class_balance.png", f"{s.split}: {s.count_kind} per class")
    croissant = hf_croissant(ingestion, manifests, name, card)
    if croissant is not None:
        (staging / CROISSANT_NAME).write_text(croissant)


def split_manifests(splits: list[LoadedSplit]) -> dict:
    """{split: manifest} of the splits read from files (a COCO split's made from its index): made once, for
    the stored manifest and the ``croissant.json`` that names its sha256."""
    manifests = {s.split: s.manifest or (split_manifest(s.index, s.digest) if s.index is not None else None)
                 for s in splits}
    return {split: manifest for split, manifest in manifests.items() if manifest is not None}


def data_root(manifests: dict) -> str | None:
    """The folder (or prefix) that holds every split read from files: a split's own folder, or the common parent
    of several (the source folder, a COCO folder); None when no split is read from files."""
    folders = [str(manifest.version_dir).rstrip("/").split("/") for manifest in manifests.values()]
    if not folders:
        return None
    common = []
    for parts in zip(*folders):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common)


def hf_croissant(ingestion: Ingestion, manifests: dict, name: str, card: dict) -> str | None:
    """The form's Croissant metadata (:func:`image_lineage.data.croissant.hf_metadata`): a split read from files
    by its stored manifest and its images where ``download`` puts them (an image folder's as under the folder that
    holds the splits, a COCO split's in ``<split>/images/``); a hub split by the hub's Parquet files. A split of
    another shape (a registered kind with neither) is left out, said in the log; None when no split is left."""
    root, parts = data_root(manifests), []
    for s in ingestion.splits:
        if s.index is not None:
            first = not any(getattr(part, "categories", False) for part in parts)
            parts.append(FileSplit(s.split, manifests[s.split], f"{s.split}/images/", coco=True,
                                   annotation=s.index.split.annotation_file, categories=first))
        elif s.split in manifests:
            within = str(manifests[s.split].version_dir).rstrip("/")[len(root):].strip("/")
            parts.append(FileSplit(s.split, manifests[s.split], f"{within}/" if within else ""))
        elif ingestion.kind == "hub":
            parts.append(HubSplit(s.split, s.source.fields["path"], s.dataset.features.to_dict(),
                                  s.source.fields.get("revision")))
        else:
            LOGGER.info("croissant.json leaves out split %s: a %s source lists no image files", s.split, ingestion.kind)
    if not parts:
        return None
    source = ingestion.source
    url = (f"https://huggingface.co/datasets/{parts[0].repo}" if isinstance(parts[0], HubSplit)
           else source if SCHEME.match(source) or root is None  # a URI as given: s3://, dbfs:/, a kind's own
           else Path(root).resolve().as_uri())
    return metadata_text(hf_metadata(name, ingestion.digest, url, parts, card))


def dataset_info(dataset) -> dict:
    info = dataset.info
    return {"builder_name": info.builder_name, "config_name": info.config_name, "version": str(info.version),
            "description": info.description, "homepage": info.homepage}
