"""Fine-tune a torchvision Faster R-CNN on a COCO folder, with the dataset's lineage in the same run.

The run holds the annotation files, the images (or one archive per split, plus previews), the class
balance, a validation report, the dataset input (content digest over images and annotations), per-step
loss components, per-epoch COCOeval bbox metrics, system metrics (GPU ones via pynvml when there is a
GPU), a checkpoint per epoch (for ``resume_from``) and the final model, registered and tagged with the
digest and the category mapping. Under ``torchrun`` every rank trains (DDP) and rank 0 alone talks to
MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from image_lineage import coco, detection, hf_dataset
from image_lineage.coco import CategoryMapping
from image_lineage.archive import write_archive
from image_lineage.core import (
    TAG_ARCHIVE_SHA256, TAG_DIGEST, TAG_IGNORED, TAG_SNAPSHOT_URI, TAG_SOURCE_URI, DatasetError, digest_prefix,
)
from image_lineage.dataset_check import check_in_run
from image_lineage.detection_data import CocoDetectionDataset, HfDetectionDataset, collate, draw_previews, prediction_grid
from image_lineage.model_lineage import log_model_metrics, start_model
from image_lineage.object_store import is_object_uri, mirror_prefix
from image_lineage.plots import plot_class_counts
from image_lineage.profiles import with_profile
from image_lineage.quality import QualityImage, require_on_leakage
from image_lineage.snapshot import find_holder, holder_tags, link_tags, mark_shared, require_snapshot_choice
from image_lineage.source_kinds.coco_folder import coco_profile, index_images, load_index
from image_lineage.sources import CocoDatasetSource
from image_lineage.tracking import MetricBuffer, link_or_copy, log_values, schema_hints_silenced, start_run, upload_folder

LOGGER = logging.getLogger(__name__)

INPUTS = ("coco", "hf")
CHECKPOINT_DIR = "checkpoints"
STEP_FLUSH = 20  # loss components go up every 20 steps, in one request
TAG_UNDEFINED_STATS = "eval.undefined_stats"  # COCOeval stats reported as -1 (no ground truth in that range)


@dataclass
class FinetuneRequest:
    data_dir: str = "coco/sample"
    train_split: str = "train"  # a split name (train, validation) or a layout name (train2017)
    val_split: str = "validation"
    input: str = "coco"
    model: str = "fasterrcnn_resnet50_fpn"
    weights: str | None = "DEFAULT"  # DEFAULT (torchvision's COCO weights), None (random init), or a state-dict path
    epochs: int = 1
    batch_size: int = 2
    lr: float = 0.005
    num_workers: int = 0  # batches already decode on threads (__getitems__); workers pay pickling
    max_images: int = 0  # per split; 0 = all
    image_size: int = 0  # 0 = the model's own resize
    amp: str | None = None  # on | off; None: on with CUDA
    device: str | None = None  # cpu | cuda; None: cuda when there is one
    seed: int = 42
    resume_from: str | None = None  # run id whose last checkpoint to continue from
    register_as: str = "fasterrcnn_resnet50_fpn_coco_2017_model"
    eval_every: int = 1
    evaluator: str = "faster-coco-eval"  # or pycocotools: the same 12 stats (bench/coco_eval.py checks it)
    image_artifacts_max: int = 200  # up to this many images per split are uploaded as files, else one archive
    previews: int = 8
    preview_images: int = 8  # validation images drawn with predictions after each evaluation (val_predictions)
    image_check: str = "structure"
    on_bad_image: str = "fail"
    quality_check: str = "on"  # duplicates, near-duplicates and leakage between train and validation
    on_leakage: str = "warn"  # fail: stop before training, the report logged
    snapshot: str = "reuse"  # copy: upload the images even when a run on the server already holds them
    run_name: str = "coco_finetune"
    experiment_name: str | None = None


@dataclass
class FinetuneResult:
    run_id: str | None
    model_version: str | None
    metrics: dict
    start_epoch: int


# ---------------------------------------------------------------- data


def find_split(splits: dict[str, coco.CocoSplit], wanted: str) -> coco.CocoSplit | None:
    for key, split in splits.items():
        if wanted in (key, split.name):
            return split
    return None


def resolve_data(request: FinetuneRequest) -> tuple[coco.CocoIndex, coco.CocoIndex]:
    """(train, validation) indexes; a folder with one split gets 20% of its images held out. An s3:// folder
    is mirrored first (each rank reads only the objects its mirror lacks)."""
    data_dir = str(mirror_prefix(request.data_dir).folder) if is_object_uri(request.data_dir) else request.data_dir
    splits = coco.find_coco_splits(data_dir)
    train = find_split(splits, request.train_split)
    if train is None:
        raise DatasetError(f"train split {request.train_split!r} not in {request.data_dir}; splits: "
                           f"{', '.join(f'{k} ({s.name})' for k, s in splits.items())}.")
    val = find_split(splits, request.val_split)

    def read(split: coco.CocoSplit) -> coco.CocoIndex:  # the image pass checks every image, once
        index = coco.index_split(split, request.max_images or None)
        return coco.read_split_images(index, request.image_check, request.on_bad_image, request.quality_check == "on")

    if val is None or val.annotation_file == train.annotation_file:
        LOGGER.info("no separate %s split in %s: holding out 20%% of %s", request.val_split, request.data_dir, train.name)
        return coco.hold_out(read(train), seed=request.seed)
    train_index, val_index = read(train), read(val)
    if [c["id"] for c in train_index.categories] != [c["id"] for c in val_index.categories]:
        raise DatasetError(f"{train.annotation_file} and {val.annotation_file} list different categories.")
    return train_index, val_index


def make_datasets(request, train_index, val_index, mapping):
    if request.input not in INPUTS:
        raise DatasetError(f"input must be coco or hf, got {request.input!r}.")
    if request.input == "hf":  # the Hugging Face form, made by the one COCO -> HF conversion
        return (HfDetectionDataset(coco.coco_to_hf(train_index), mapping),
                HfDetectionDataset(coco.coco_to_hf(val_index), mapping))
    return CocoDetectionDataset(train_index, mapping), CocoDetectionDataset(val_index, mapping)


def make_loader(dataset, request, shuffle: bool, distributed: bool):
    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=shuffle, seed=request.seed) if distributed else None
    generator = torch.Generator().manual_seed(request.seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=request.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=request.num_workers, collate_fn=collate, generator=generator,
        pin_memory=torch.cuda.is_available(), persistent_workers=request.num_workers > 0,
    )


# ---------------------------------------------------------------- dataset lineage


def log_dataset(request: FinetuneRequest, indexes: dict[str, coco.CocoIndex], mapping: CategoryMapping,
                quality_status: str | None = None) -> tuple[str, dict]:
    """Everything about the data, before training; returns the combined content digest and the MLflow
    dataset of each split ({role: dataset}). The annotation files and images are uploaded only when no run
    on the server holds this digest's files yet (or with ``snapshot=copy``); otherwise the run links to them."""
    digests = {role: coco.compute_coco_digest(index) for role, index in indexes.items()}
    combined = hf_dataset.combined_digest(digests)
    run = mlflow.active_run()
    holder = find_holder(combined, run.info.experiment_id) if request.snapshot == "reuse" else None
    linked = link_tags(holder) if holder else None
    datasets, archives = {}, {}
    with tempfile.TemporaryDirectory(prefix="coco_finetune_") as staging:
        root = Path(staging)
        snapshot_uri = linked[TAG_SNAPSHOT_URI] if linked else f"runs:/{run.info.run_id}/coco"
        for role, index in indexes.items():
            datasets[role] = log_split_input(request, role, index, digests[role], quality_status, snapshot_uri)
            archive_sha256 = stage_split_files(request, role, index, root, with_data=holder is None)
            if archive_sha256:
                archives[f"{TAG_ARCHIVE_SHA256}.{role}"] = archive_sha256
        (root / "category_mapping.json").write_text(mapping.to_json())
        upload_folder(root)
    if holder:
        LOGGER.info("digest %s already stored by run %s: images not uploaded again", combined[:12], holder.info.run_id)
        mark_shared(holder)
    snapshot_tags = linked or {**holder_tags(combined, run.info.run_id, "coco"), **archives}
    ignored = sum(len(index.ignored) for index in indexes.values())
    remote = {TAG_SOURCE_URI: request.data_dir} if is_object_uri(request.data_dir) else {}
    mlflow.set_tags({TAG_DIGEST: combined, TAG_IGNORED: str(ignored), **snapshot_tags, **remote,
                     **{f"{TAG_DIGEST}.{r}": d for r, d in digests.items()}})
    return combined, datasets


def log_split_input(request, role: str, index: coco.CocoIndex, digest: str, quality_status: str | None = None,
                    snapshot_uri: str | None = None):
    """The dataset input: the HF form (input=hf) or a per-image table with a COCO source (input=coco),
    its source naming where the files are stored (``snapshot_uri``); returns the MLflow dataset."""
    context = "training" if role == "train" else "validation"
    if request.input == "hf":
        loaded = load_index(index, role, digest)
        loaded.mlflow_source.snapshot_uri = snapshot_uri
        return hf_dataset.log_split_input(loaded, "coco", context, quality_status)
    table = pd.DataFrame([{"image_id": i["id"], "file_name": i["file_name"], "width": i["width"], "height": i["height"],
                           "annotations": len(index.annotations_by_image[i["id"]])} for i in index.images])
    with schema_hints_silenced():
        dataset = mlflow.data.from_pandas(table, source=CocoDatasetSource.from_split(index.split, snapshot_uri),
                                          name=f"coco_{role}", digest=digest_prefix(digest))
        with_profile(dataset, {**coco_profile(index, digest, coco.instances_per_category(index)),
                               "quality_status": quality_status})
        mlflow.log_input(dataset, context=context, tags={"split": role})
    return dataset


def stage_split_files(request, role: str, index: coco.CocoIndex, root: Path, with_data: bool = True) -> str | None:
    """Class balance, validation report, previews and, ``with_data``, the annotation file and the images
    (files, or one deterministic archive); returns the archive's sha256 when there is one."""
    folder = root / "coco" / role
    folder.mkdir(parents=True)
    archive_sha256 = None
    if with_data:
        (folder / index.split.annotation_file.name).write_bytes(index.split.annotation_file.read_bytes())
        if len(index.images) <= request.image_artifacts_max:
            for image in index.images:
                target = folder / "images" / image["file_name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(index.image_path(image), target)
        else:
            archive_sha256 = write_archive(((f"{index.split.name}/{image['file_name']}", index.image_path(image))
                                            for image in index.images), folder / f"{index.split.name}_images.tar")
    balance = {"instances": coco.instances_per_category(index), "images": coco.images_per_category(index)}
    (folder / "class_balance.json").write_text(json.dumps(balance, indent=1))
    plot_class_counts(balance["instances"], folder / "class_balance.png", f"{role}: instances per category")
    (folder / "validation_report.json").write_text(json.dumps(coco.validation_report(index), indent=1))
    if index.ignored:
        (folder / "ignored_files.json").write_text(json.dumps(index.ignored, indent=1))
    draw_previews(CocoDetectionDataset(index), folder / "previews", request.previews)
    return archive_sha256


def split_images(indexes: dict[str, coco.CocoIndex]) -> list[QualityImage]:
    """Train and validation images for the leakage check, each with its canonical annotations."""
    return [image for role, index in indexes.items() for image in index_images(index, role)]


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(model, optimizer, scaler, epoch: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"epoch_{epoch:03d}.pt"
        torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler else None}, path)
        mlflow.log_artifact(str(path), CHECKPOINT_DIR)


def load_checkpoint(run_id: str) -> dict:
    """The latest checkpoint a run logged."""
    client = mlflow.MlflowClient()
    try:
        files = sorted(f.path for f in client.list_artifacts(run_id, CHECKPOINT_DIR))
    except mlflow.exceptions.MlflowException as exc:
        raise DatasetError(f"resume_from={run_id!r}: no such run ({exc.message}).") from exc
    if not files:
        raise DatasetError(f"resume_from={run_id!r}: the run logged no {CHECKPOINT_DIR}/ to resume from.")
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=files[-1])
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- the run


def run_finetune(request: FinetuneRequest) -> FinetuneResult:
    detection.coco_api(request.evaluator)  # an unknown evaluator or gate fails before anything is read
    require_on_leakage(request.on_leakage)
    require_snapshot_choice(request.snapshot)
    if request.amp not in (None, "on", "off"):
        raise DatasetError(f"amp must be on, off or auto, got {request.amp!r}.")
    distributed = detection.init_distributed()
    try:
        torch.manual_seed(request.seed)
        train_index, val_index = resolve_data(request)
        mapping = CategoryMapping.from_index(train_index)
        device = detection.resolve_device(request.device)
        # what can fail without the data (weights to download, the device) fails before the run logs anything
        model = detection.build_model(request.model, request.weights, mapping.num_classes, request.image_size).to(device)
        main = detection.is_main_process()
        run_context = start_run(request.experiment_name, request.run_name, log_system_metrics=True) if main else contextlib.nullcontext()
        with run_context as run:
            return train_and_log(request, run, model, train_index, val_index, mapping, device, distributed)
    finally:
        detection.shutdown_distributed()


def train_and_log(request, run, model, train_index, val_index, mapping, device, distributed) -> FinetuneResult:
    main = run is not None
    quality = None
    if main and request.quality_check == "on":  # before anything heavy: on_leakage=fail stops the run here
        quality = check_in_run(run, split_images({"train": train_index, "validation": val_index}), request.image_check,
                     request.on_leakage)
    if main:
        digest, datasets = log_dataset(request, {"train": train_index, "validation": val_index}, mapping,
                                       quality.status if quality else None)
        log_params(run, request, train_index, val_index, mapping, device)
        model_id = start_model(datasets["train"], "object-detection", name=request.model)
    train_set, val_set = make_datasets(request, train_index, val_index, mapping)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=request.lr, momentum=0.9, weight_decay=1e-4)
    use_amp = request.amp == "on" or (request.amp is None and device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type) if use_amp else None
    start_epoch = 1
    if request.resume_from:
        checkpoint = load_checkpoint(request.resume_from)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        start_epoch = checkpoint["epoch"] + 1
        if main:
            mlflow.set_tags({"resumed_from_run": request.resume_from, "resumed_at_epoch": str(start_epoch)})
    trained = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    train_loader = make_loader(train_set, request, shuffle=True, distributed=distributed)
    val_loader = make_loader(val_set, request, shuffle=False, distributed=False)
    ground_truth = detection.coco_ground_truth(val_index, request.evaluator) if main else None
    buffer = MetricBuffer(run.info.run_id, STEP_FLUSH) if main else None
    metrics, step = {}, (start_epoch - 1) * len(train_loader)
    for epoch in range(start_epoch, request.epochs + 1):
        if distributed:
            train_loader.sampler.set_epoch(epoch)
            record_shards(train_loader, train_index, epoch, main)
        losses = detection.mean_over_ranks(detection.train_one_epoch(
            trained, optimizer, train_loader, device, epoch, scaler, on_step=buffer.add if main else None, first_step=step))
        step += len(train_loader)
        if main:
            buffer.flush()
            metrics = {f"epoch_{k}": v for k, v in losses.items()}
            log_model_metrics(model_id, metrics, datasets["train"], step=epoch)
            if epoch % request.eval_every == 0 or epoch == request.epochs:
                stats = detection.evaluate(model, val_loader, device, ground_truth, mapping, request.evaluator)
                defined, undefined = detection.split_undefined(stats)
                log_model_metrics(model_id, defined, datasets["validation"], step=epoch)
                grid = prediction_grid(model, val_set, request.preview_images, device)
                if grid is not None:  # the UI shows these per step: the detector learning, epoch by epoch
                    mlflow.log_image(grid, key="val_predictions", step=epoch)
                metrics.update(defined)
                mlflow.set_tag(TAG_UNDEFINED_STATS, ",".join(undefined) or "none")
            save_checkpoint(model, optimizer, scaler, epoch)
        detection.barrier()
    version = log_final_model(model, request, mapping, digest, model_id) if main and request.epochs >= start_epoch else None
    return FinetuneResult(run.info.run_id if main else None, version, metrics, start_epoch)


def record_shards(loader, index: coco.CocoIndex, epoch: int, main: bool) -> None:
    """Which training images each process trains on this epoch (DistributedSampler's shard of the shuffled
    order), logged by rank 0 as ``distributed/train_shards_epoch_<n>.json``: the lineage of a DDP run."""
    shards = detection.gather_from_ranks([index.images[i]["file_name"] for i in loader.sampler])
    if main:
        mlflow.log_dict({"epoch": epoch, "world_size": len(shards), "shards": shards},
                        f"distributed/train_shards_epoch_{epoch}.json")


def log_params(run, request, train_index, val_index, mapping, device) -> None:
    """The request's values (those `mlflow run` has not logged already) and what was derived from them."""
    derived = {"num_train_images": len(train_index.images), "num_val_images": len(val_index.images),
               "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
               "num_classes": len(mapping.names), "device_used": str(device),
               "train_annotation_file": train_index.split.annotation_file.name,
               "val_annotation_file": val_index.split.annotation_file.name}
    # None means "the default" (auto, none): left out, as `mlflow run` already logged the word the user typed
    given = {k: v for k, v in asdict(request).items() if k != "experiment_name" and v is not None}
    log_values(run, params={**given, **derived})


def log_final_model(model, request, mapping: CategoryMapping, digest: str, model_id: str) -> str:
    """Log and register the model; tag the version with the dataset digest and the category mapping.

    Pickle, not MLflow's default pt2: torch.export does not trace torchvision's detection models (their
    forward branches on data). The signature says what a detector takes: a batch of float images.
    """
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]))
    info = mlflow.pytorch.log_model(
        model.cpu().eval(), name="model", serialization_format="pickle", signature=signature,
        registered_model_name=request.register_as, pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
        model_id=model_id,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in {TAG_DIGEST: digest, "category_mapping": mapping.to_json(), "model_arch": request.model}.items():
        client.set_model_version_tag(request.register_as, version, key, value)
    return version
