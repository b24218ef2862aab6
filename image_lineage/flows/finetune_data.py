"""The data side of ``coco_finetune``: its splits through the ingestion path (:mod:`image_lineage.flows.ingest`),
stored or linked and logged before training, and the loaders the training loop reads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import torch

from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_SNAPSHOT_URI
from image_lineage.data.coco import index as coco
from image_lineage.data.croissant import CROISSANT_NAME, coco_metadata, metadata_text, read_card
from image_lineage.data.coco.hf_form import coco_to_hf
from image_lineage.data.coco.layout import find_coco_splits
from image_lineage.data.kinds import LoadedSplit, LoadOptions, kind_of
from image_lineage.data.kinds.dbfs import SCHEME as DBFS_SCHEME
from image_lineage.data.kinds.coco_folder import index_split_loaded
from image_lineage.data.object_store import is_object_uri
from image_lineage.flows.charts import plot_class_counts
from image_lineage.flows.ingest import Ingestion, digest_tags, log_split_inputs, source_tags, split_inputs
from image_lineage.flows.staging import stage_coco_files
from image_lineage.tracking.content_store import packs_tags
from image_lineage.tracking.snapshots import find_holder, holder_tags, store_or_link
from image_lineage.training.detection.coco_data import CocoDetectionDataset, HfDetectionDataset, collate, draw_previews

LOGGER = logging.getLogger(__name__)

INPUTS = ("coco", "hf")
CONTEXTS = {"train": "training", "validation": "validation"}


def find_split(splits: dict, wanted: str) -> str | None:
    """The key of the split called ``wanted``: a split name (train, validation) or a layout name (train2017)."""
    return next((key for key, handle in splits.items() if wanted in (key, getattr(handle, "name", None))), None)


def read_data(request) -> Ingestion:
    """The train and validation splits, read by the data folder's kind (an ``s3://`` folder is mirrored
    first, since training reads files: each rank reads only the objects its mirror lacks); a folder with one
    split gets 20% of its images held out for validation."""
    options = LoadOptions(image_check=request.image_check, on_bad_image=request.on_bad_image,
                          perceptual=request.quality_check == "on", max_images=request.max_images,
                          engine=request.engine, files_on_disk=True)
    if not is_object_uri(request.data_dir) and not request.data_dir.startswith(DBFS_SCHEME):
        find_coco_splits(request.data_dir)  # a local folder that is no COCO folder: what one needs, named
    kind = kind_of(request.data_dir)
    handles = kind.splits(request.data_dir, "all")
    train_key, val_key = find_split(handles, request.train_split), find_split(handles, request.val_split)
    if train_key is None:
        names = ", ".join(f"{key} ({getattr(handle, 'name', key)})" for key, handle in handles.items())
        raise LineageError(f"train split {request.train_split!r} not in {request.data_dir}; splits: {names}.")
    train = kind.load_split("train", handles[train_key], options)
    if train.index is None:
        raise LineageError(f"coco_finetune trains on a COCO folder (annotations/instances_<name>.json + <name>/): "
                           f"{request.data_dir} is a {kind.name} source.")
    if val_key is None or val_key == train_key:
        LOGGER.info("no separate %s split in %s: holding out 20%% of %s", request.val_split, request.data_dir, train_key)
        parts = coco.hold_out(train.index, seed=request.seed)
        splits = [index_split_loaded(index, role) for index, role in zip(parts, ("train", "validation"))]
    else:
        val = kind.load_split("validation", handles[val_key], options)
        if [c["id"] for c in train.index.categories] != [c["id"] for c in val.index.categories]:
            raise LineageError(f"{train.index.split.annotation_file} and {val.index.split.annotation_file} list "
                               f"different categories.")
        splits = [train, val]
    return Ingestion(request.data_dir, kind.name, splits)


def log_data(request, run, ingestion: Ingestion, mapping: coco.CategoryMapping, quality_status: str | None = None) -> dict:
    """Everything about the data, before training (stages 5 and 6); returns the MLflow dataset of each split
    ({role: dataset}). The annotation files and images are uploaded only when no run on the server holds this
    digest's files yet (or with ``snapshot=copy``); otherwise the run links to them."""
    digest, splits = ingestion.digest, ingestion.splits
    holder = find_holder(digest, run.info.experiment_id) if request.snapshot == "reuse" else None
    snapshot_uri = holder.data.tags.get(TAG_SNAPSHOT_URI) if holder else f"runs:/{run.info.run_id}/coco"
    datasets = log_split_inputs(run.info.run_id, split_inputs(splits, "coco", request.input, quality_status, snapshot_uri,
                                                              context=CONTEXTS))
    snapshot_tags = store_or_link(digest, holder, stage_data=lambda folder: stage_coco_data(splits, folder, request, run),
                                  stage_own=lambda folder: stage_coco_reports(splits, folder, mapping, ingestion))
    mlflow.set_tags({**digest_tags(splits), **source_tags(ingestion), **snapshot_tags})
    return datasets


def stage_coco_data(splits: list[LoadedSplit], root: Path, request, run) -> dict[str, str]:
    """The files stored once per digest: per split, the annotation file and images (or the content store's map)
    and the annotated previews (drawn from the data alone: a run that links to these files shows the holder's);
    returns the holder tags."""
    packs = stage_coco_files(splits, root / "coco", request.image_artifacts_max)
    for loaded in splits:
        draw_previews(CocoDetectionDataset(loaded.index), root / "coco" / loaded.split / "previews", request.previews)
    return {**holder_tags(run.info.run_id, "coco"), **packs_tags(packs)}


def stage_coco_reports(splits: list[LoadedSplit], root: Path, mapping: coco.CategoryMapping,
                       ingestion: Ingestion) -> None:
    """Per split, class balance, validation report and left-out files; the category mapping; ``croissant.json``."""
    for loaded in splits:
        index, folder = loaded.index, root / "coco" / loaded.split
        folder.mkdir(parents=True, exist_ok=True)
        balance = {"instances": coco.instances_per_category(index), "images": coco.images_per_category(index)}
        (folder / "class_balance.json").write_text(json.dumps(balance, indent=1))
        plot_class_counts(balance["instances"], folder / "class_balance.png", f"{loaded.split}: instances per category")
        (folder / "validation_report.json").write_text(json.dumps(loaded.report, indent=1))
        if index.ignored:
            (folder / "ignored_files.json").write_text(json.dumps(index.ignored, indent=1))
    (root / "category_mapping.json").write_text(mapping.to_json())
    (root / CROISSANT_NAME).write_text(coco_croissant(ingestion))


def coco_croissant(ingestion: Ingestion) -> str:
    """The splits' Croissant metadata (:func:`image_lineage.data.croissant.coco_metadata`), laid out as the run
    stores them and ``download`` rebuilds them (``<split>/<annotation file>``, ``<split>/images/``)."""
    source = ingestion.source
    url = source if is_object_uri(source) else Path(source).resolve().as_uri()
    splits = [(s.split, s.index.split.annotation_file, [image["file_name"] for image in s.index.images])
              for s in ingestion.splits]
    return metadata_text(coco_metadata(f"coco_{Path(source.rstrip('/')).name}", ingestion.digest, url, splits,
                                       read_card(source)))


def make_datasets(request, train_index, val_index, mapping):
    if request.input not in INPUTS:
        raise LineageError(f"input must be coco or hf, got {request.input!r}.")
    if request.input == "hf":  # the Hugging Face form, made by the one COCO -> HF conversion
        return HfDetectionDataset(coco_to_hf(train_index), mapping), HfDetectionDataset(coco_to_hf(val_index), mapping)
    return CocoDetectionDataset(train_index, mapping), CocoDetectionDataset(val_index, mapping)


def make_loader(dataset, request, shuffle: bool, distributed: bool):
    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=shuffle, seed=request.seed) if distributed else None
    generator = torch.Generator().manual_seed(request.seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=request.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=request.num_workers, collate_fn=collate, generator=generator,
        pin_memory=torch.cuda.is_available(), persistent_workers=request.num_workers > 0,
    )
