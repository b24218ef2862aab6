"""Fine-tune a torchvision Faster R-CNN on a COCO folder, with the dataset's lineage in the same run.

The run holds the annotation files and images (past ``image_artifacts_max``, a content store map per split),
previews, the class balance, a validation report, the dataset input (content digest over images and
annotations), per-step loss components, per-epoch COCOeval bbox metrics, system metrics (GPU ones via pynvml
when there is a GPU), a checkpoint per epoch (for ``resume_from``) and the final model, registered and tagged with the
digest and the category mapping. The data takes the ingestion path (:mod:`image_lineage.flows.finetune_data`)
before anything heavy; the loop is torchvision's (:mod:`image_lineage.training.detection.engine`). Under
``torchrun`` every rank trains (DDP) and rank 0 alone talks to MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from image_lineage.core import config
from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_DIGEST
from image_lineage.data.coco.index import CategoryMapping, CocoIndex
from image_lineage.flows.finetune_data import log_data, make_datasets, make_loader, read_data
from image_lineage.flows.ingest import Ingestion, check_in_run, digest_tags
from image_lineage.quality.gate import require_on_leakage
from image_lineage.tracking.model_registry import log_model_metrics, start_model
from image_lineage.tracking.runs import MetricBuffer, log_values, start_run
from image_lineage.tracking.snapshots import require_snapshot_choice
from image_lineage.training.detection import distributed, engine
from image_lineage.training.detection.coco_data import prediction_grid
from image_lineage.training.detection.detectors import build_model, resolve_device

LOGGER = logging.getLogger(__name__)

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
    image_artifacts_max: int = 200  # up to this many images per split go up as files, more into the content store
    previews: int = 8
    preview_images: int = 8  # validation images drawn with predictions after each evaluation (val_predictions)
    image_check: str = "structure"
    engine: str = "local"  # where the image pass runs: local (this machine) or spark (a Spark job)
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


@dataclass
class Training:
    """What the epoch loop needs: the model (and its DDP wrapper), optimizer, loaders, and where it logs."""

    model: torch.nn.Module
    trained: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    val_set: object
    device: torch.device
    start_epoch: int
    model_id: str | None = None  # rank 0: the LoggedModel its metrics go to
    datasets: dict | None = None  # rank 0: {role: MLflow dataset} the metrics were measured on


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
        raise LineageError(f"resume_from={run_id!r}: no such run ({exc.message}).") from exc
    if not files:
        raise LineageError(f"resume_from={run_id!r}: the run logged no {CHECKPOINT_DIR}/ to resume from.")
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=files[-1])
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- the run


def run_finetune(request: FinetuneRequest) -> FinetuneResult:
    engine.coco_api(request.evaluator)  # an unknown evaluator or gate fails before anything is read
    require_on_leakage(request.on_leakage)
    require_snapshot_choice(request.snapshot)
    if request.amp not in (None, "on", "off"):
        raise LineageError(f"amp must be on, off or auto, got {request.amp!r}.")
    in_group = distributed.init_distributed()
    try:
        torch.manual_seed(request.seed)
        ingestion = read_data_on_ranks(request)
        device = resolve_device(request.device)
        mapping = ingestion.splits[0].index.mapping
        # what can fail without the data (weights to download, the device) fails before the run logs anything
        model = build_model(request.model, request.weights, mapping.num_classes, request.image_size).to(device)
        main = distributed.is_main_process()
        run_context = (start_run(request.experiment_name, request.run_name, log_system_metrics=True, job="coco_finetune",
                                 reads=ingestion.reads)
                       if main else contextlib.nullcontext())
        with run_context as run:
            return train_and_log(request, run, model, ingestion, mapping, device, in_group)
    finally:
        distributed.shutdown_distributed()


def read_data_on_ranks(request: FinetuneRequest) -> Ingestion:
    """Every rank needs the splits' indexes. With ``engine=spark`` under torchrun the image pass is one Spark job
    per machine, not one per rank: each machine's first rank reads, the others wait for it (up to
    ``distributed.WAIT_TIMEOUT``) and then find every file in the record cache they share, so they start no Spark
    session. A failure on any rank stops every rank."""
    if request.engine != "spark" or not distributed.in_group():
        return read_data(request)
    first = config.local_rank() == 0
    ingestion, failure = attempt_read(request) if first else (None, None)
    distributed.raise_if_any_failed(failure)
    if not first:
        ingestion, failure = attempt_read(request)
    distributed.raise_if_any_failed(failure)
    return ingestion


def attempt_read(request: FinetuneRequest) -> tuple[Ingestion | None, Exception | None]:
    try:
        return read_data(request), None
    except Exception as exc:  # said to every rank before it is raised (distributed.raise_if_any_failed)
        return None, exc


def train_and_log(request, run, model, ingestion, mapping: CategoryMapping, device, in_group: bool) -> FinetuneResult:
    """Rank 0 checks and logs the data first (on_leakage=fail stops the run before anything heavy), then
    every rank trains; rank 0 logs each epoch and the final model."""
    train_index, val_index = (split.index for split in ingestion.splits)
    datasets = model_id = None
    if run is not None:
        quality = None
        if request.quality_check == "on":
            quality = check_in_run(run, ingestion.images, request.image_check, request.on_leakage,
                                   engine=request.engine)
        datasets = log_data(request, run, ingestion, mapping, quality.status if quality else None)
        log_params(run, request, train_index, val_index, mapping, device)
        model_id = start_model(datasets["train"], "object-detection", name=request.model)
    training = prepare_training(request, model, train_index, val_index, mapping, device, in_group)
    training.datasets, training.model_id = datasets, model_id
    if run is not None and request.resume_from:
        mlflow.set_tags({"resumed_from_run": request.resume_from, "resumed_at_epoch": str(training.start_epoch)})
    metrics = run_epochs(request, run, training, train_index, val_index, mapping, in_group)
    version = None
    if run is not None and request.epochs >= training.start_epoch:
        version = log_final_model(model, request, mapping, digest_tags(ingestion.splits), model_id)
    return FinetuneResult(run.info.run_id if run is not None else None, version, metrics, training.start_epoch)


def prepare_training(request, model, train_index, val_index, mapping, device, in_group: bool) -> Training:
    """Optimizer, mixed precision, a checkpoint to resume from, and the loaders."""
    train_set, val_set = make_datasets(request, train_index, val_index, mapping)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=request.lr, momentum=0.9,
                                weight_decay=1e-4)
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
    trained = torch.nn.parallel.DistributedDataParallel(model) if in_group else model
    return Training(model, trained, optimizer, scaler, make_loader(train_set, request, shuffle=True, distributed=in_group),
                    make_loader(val_set, request, shuffle=False, distributed=False), val_set, device, start_epoch)


def run_epochs(request, run, training: Training, train_index, val_index, mapping, in_group: bool) -> dict:
    """The epochs: every rank trains; rank 0 logs losses per step and per epoch, evaluates, draws
    predictions and saves a checkpoint. Returns the last epoch's metrics (rank 0)."""
    main = run is not None
    ground_truth = engine.coco_ground_truth(val_index, request.evaluator) if main else None
    buffer = MetricBuffer(run.info.run_id, STEP_FLUSH) if main else None
    metrics, step = {}, (training.start_epoch - 1) * len(training.train_loader)
    for epoch in range(training.start_epoch, request.epochs + 1):
        if in_group:
            training.train_loader.sampler.set_epoch(epoch)
            record_shards(training.train_loader, train_index, epoch, main)
        losses = distributed.mean_over_ranks(engine.train_one_epoch(
            training.trained, training.optimizer, training.train_loader, training.device, epoch, training.scaler,
            on_step=buffer.add if main else None, first_step=step))
        step += len(training.train_loader)
        if main:
            buffer.flush()
            metrics = {f"epoch_{k}": v for k, v in losses.items()}
            log_model_metrics(training.model_id, metrics, training.datasets["train"], step=epoch)
            if epoch % request.eval_every == 0 or epoch == request.epochs:
                metrics.update(evaluate_epoch(request, training, ground_truth, mapping, epoch))
            save_checkpoint(training.model, training.optimizer, training.scaler, epoch)
        distributed.barrier()
    return metrics


def evaluate_epoch(request, training: Training, ground_truth, mapping, epoch: int) -> dict:
    """COCOeval on the validation split, logged against it; the predictions drawn for the UI's step slider."""
    model = training.model
    stats = engine.evaluate(model, training.val_loader, training.device, ground_truth, mapping, request.evaluator)
    defined, undefined = engine.split_undefined(stats)
    log_model_metrics(training.model_id, defined, training.datasets["validation"], step=epoch)
    grid = prediction_grid(model, training.val_set, request.preview_images, training.device)
    if grid is not None:  # the UI shows these per step: the detector learning, epoch by epoch
        mlflow.log_image(grid, key="val_predictions", step=epoch)
    mlflow.set_tag(TAG_UNDEFINED_STATS, ",".join(undefined) or "none")
    return defined


def record_shards(loader, index: CocoIndex, epoch: int, main: bool) -> None:
    """Which training images each process trains on this epoch (DistributedSampler's shard of the shuffled
    order), logged by rank 0 as ``distributed/train_shards_epoch_<n>.json``: the lineage of a DDP run."""
    shards = distributed.gather_from_ranks([index.images[i]["file_name"] for i in loader.sampler])
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


# What each digest a model version carries is: any of them, whole or its first 12 or 32 digits, finds the model
DIGESTS_NOTE = (f"{TAG_DIGEST}: the train and validation splits together (sha256 over the split digests); "
                f"{TAG_DIGEST}.<split>: each split's content digest (its MLflow dataset input holds the first 32 "
                "digits). image_lineage.models_trained_on(<any of them>) finds this version.")


def log_final_model(model, request, mapping: CategoryMapping, digests: dict[str, str], model_id: str) -> str:
    """Log and register the model; tag the version with the dataset digests (combined and per split, and what
    each is) and the category mapping.

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
    tags = {**digests, f"{TAG_DIGEST}.about": DIGESTS_NOTE, "category_mapping": mapping.to_json(), "model_arch": request.model}
    for key, value in tags.items():
        client.set_model_version_tag(request.register_as, version, key, value)
    return version
