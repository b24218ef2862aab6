"""Faster R-CNN fine-tuning engine, after torchvision's ``references/detection/engine.py``.

``build_model`` makes one of torchvision's Faster R-CNN variants with a box predictor for the dataset's
classes; ``train_one_epoch`` and ``evaluate`` are the loop's two halves (COCOeval bbox metrics from
pycocotools); the distributed helpers let the same loop run under ``torchrun`` with DDP.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Callable

import torch
import torch.distributed as dist
from torchvision.models import detection as tv_detection
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from tqdm import tqdm

from image_lineage.coco import CategoryMapping
from image_lineage.core import DatasetError
from image_lineage.detection_data import to_model_input

MODELS = {
    "fasterrcnn_resnet50_fpn": (tv_detection.fasterrcnn_resnet50_fpn, tv_detection.FasterRCNN_ResNet50_FPN_Weights),
    "fasterrcnn_resnet50_fpn_v2": (tv_detection.fasterrcnn_resnet50_fpn_v2, tv_detection.FasterRCNN_ResNet50_FPN_V2_Weights),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (tv_detection.fasterrcnn_mobilenet_v3_large_320_fpn,
                                              tv_detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights),
}
# COCOeval's 12 bbox stats, in its own order (``COCOeval.stats``)
COCO_METRICS = ("mAP", "mAP_50", "mAP_75", "mAP_small", "mAP_medium", "mAP_large",
                "AR_1", "AR_10", "AR_100", "AR_small", "AR_medium", "AR_large")
# faster-coco-eval: the same COCOeval in C++ (bench/coco_eval.py checks its 12 stats against pycocotools')
EVALUATORS = ("faster-coco-eval", "pycocotools")


def build_model(name: str, weights: str | None, num_classes: int, image_size: int = 0) -> torch.nn.Module:
    """A Faster R-CNN with ``num_classes`` outputs (background included).

    ``weights``: ``DEFAULT`` (torchvision's COCO weights, then a new box predictor), None (random init,
    no backbone weights either: nothing is downloaded), or a path to a state dict.
    """
    if name not in MODELS:
        raise DatasetError(f"model must be one of {', '.join(MODELS)}, got {name!r}.")
    builder, weights_enum = MODELS[name]
    size = {"min_size": image_size, "max_size": image_size} if image_size else {}
    if weights is None:
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, **size)
    if weights == "DEFAULT":
        try:
            model = builder(weights=weights_enum.DEFAULT, **size)
        except (OSError, RuntimeError) as exc:  # urllib errors are OSErrors; a partial file is a RuntimeError
            raise DatasetError(
                f"torchvision's pretrained weights for {name} could not be loaded ({exc}). Offline, run with "
                f"-P weights=none, or put the weights file in $TORCH_HOME/hub/checkpoints (TORCH_HOME="
                f"{os.environ.get('TORCH_HOME', '~/.cache/torch')}), or pass -P weights=<path to a state dict>."
            ) from exc
        replace_predictor(model, num_classes)
        return model
    return load_state_dict_model(builder, weights, num_classes, size)


def load_state_dict_model(builder, path: str, num_classes: int, size: dict) -> torch.nn.Module:
    if not os.path.isfile(path):
        raise DatasetError(f"weights={path!r}: no such file. Use DEFAULT, none, or a path to a state dict.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    classes_in_file = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    model = builder(weights=None, weights_backbone=None, num_classes=classes_in_file, **size)
    model.load_state_dict(state)
    if classes_in_file != num_classes:
        replace_predictor(model, num_classes)
    return model


def replace_predictor(model, num_classes: int) -> None:
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)


def train_one_epoch(model, optimizer, loader, device, epoch: int, scaler: torch.amp.GradScaler | None,
                    on_step: Callable[[int, dict], None] | None = None, first_step: int = 0) -> dict[str, float]:
    """One epoch; returns the mean of each loss component. ``on_step(step, losses)`` sees every step."""
    model.train()
    totals: dict[str, float] = {}
    steps = 0
    use_amp = scaler is not None
    for images, targets in tqdm(loader, desc=f"epoch {epoch}", disable=not is_main_process(), leave=False):
        images = [to_model_input(image, device) for image in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast(device_type=device.type, enabled=use_amp):
            loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}: lower -P lr or check the boxes.")
        optimizer.zero_grad(set_to_none=True)
        if use_amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        values = {key: value.item() for key, value in loss_dict.items()} | {"loss": loss.item()}
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value
        steps += 1
        if on_step:
            on_step(first_step + steps, values)
    return {key: total / max(steps, 1) for key, total in totals.items()}


def coco_api(evaluator: str):
    """(COCO, COCOeval) classes of ``evaluator``: pycocotools, or faster-coco-eval's drop-in pair."""
    if evaluator == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    if evaluator == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster
        return COCO, COCOeval_faster
    raise DatasetError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {evaluator!r}.")


def coco_ground_truth(index, evaluator: str = EVALUATORS[0]):
    """A COCO object over the split's images (crowd annotations included, as COCOeval wants)."""
    coco_class, _ = coco_api(evaluator)
    gt = coco_class()
    gt.dataset = {
        "info": {}, "images": index.images, "categories": index.categories,
        "annotations": [a for image in index.images for a in index.annotations_by_image[image["id"]]],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def outputs_to_coco_results(outputs, image_ids, mapping: CategoryMapping) -> list[dict]:
    """Model outputs (``boxes`` xyxy, ``labels``, ``scores``) as COCO result rows (bbox xywh, COCO ids).

    Boxes go to COCOeval as computed: rounding them (as result files often do) moved mAP by up to 2e-3."""
    results = []
    for output, image_id in zip(outputs, image_ids):
        boxes_xyxy = output["boxes"].double().cpu()
        boxes_xywh = torch.cat([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], dim=1)
        for box, label, score in zip(boxes_xywh.tolist(), output["labels"].tolist(), output["scores"].tolist()):
            results.append({"image_id": int(image_id), "category_id": mapping.coco_ids[label - 1],
                            "bbox": box, "score": float(score)})
    return results


def coco_bbox_stats(gt, results: list[dict], image_ids: list[int], evaluator: str = EVALUATORS[0]) -> dict[str, float]:
    """COCOeval's 12 bbox stats by name; -1 marks a stat with no ground truth in its area range."""
    coco_class, eval_class = coco_api(evaluator)
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            detections = gt.loadRes(results)
        else:  # loadRes refuses an empty list; no detections is a valid (all-zero) answer
            detections = coco_class()
            detections.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
            detections.createIndex()
        cocoeval = eval_class(gt, detections, iouType="bbox")
        cocoeval.params.imgIds = sorted(image_ids)
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    return {key: float(value) for key, value in zip(COCO_METRICS, cocoeval.stats[: len(COCO_METRICS)])}


def split_undefined(stats: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """(the defined stats, the names of those COCOeval reports as -1): a -1 is "no ground truth in that
    area range", not a score, so it is never logged as one."""
    return {k: v for k, v in stats.items() if v != -1}, [k for k, v in stats.items() if v == -1]


@torch.no_grad()
def evaluate(model, loader, device, gt, mapping: CategoryMapping, evaluator: str = EVALUATORS[0]) -> dict[str, float]:
    """All 12 COCOeval bbox stats of ``model`` on ``loader``'s images (-1 where undefined)."""
    model.eval()
    results, image_ids = [], []
    for images, targets in tqdm(loader, desc="evaluate", disable=not is_main_process(), leave=False):
        outputs = model([to_model_input(image, device) for image in images])
        ids = [int(t["image_id"]) for t in targets]
        results.extend(outputs_to_coco_results(outputs, ids, mapping))
        image_ids.extend(ids)
    return coco_bbox_stats(gt, results, image_ids, evaluator)


# ---------------------------------------------------------------- distributed


def init_distributed() -> bool:
    """Join the process group ``torchrun`` describes (RANK/WORLD_SIZE); False when not under torchrun."""
    if "RANK" not in os.environ or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return True


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each rank's epoch means averaged over the ranks, so the logged losses describe every shard, not rank
    0's alone (every rank calls this, with the same keys)."""
    if not dist.is_initialized():
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / dist.get_world_size()).tolist()))


def gather_from_ranks(value) -> list:
    """``value`` of every rank, in rank order (one element without a process group)."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(choice: str | None) -> torch.device:
    """``cpu`` or ``cuda`` (this process's GPU under torchrun); None picks CUDA when there is one."""
    if choice is None:
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise DatasetError("-P device=cuda, but no CUDA device is visible: use device=auto or cpu.")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if choice != "cpu":
        raise DatasetError(f"device must be auto, cpu or cuda, got {choice!r}.")
    return torch.device("cpu")
