"""Faster R-CNN fine-tuning loop, after torchvision's ``references/detection/engine.py``: ``train_one_epoch``
and ``evaluate`` are its two halves (COCOeval bbox metrics from pycocotools or faster-coco-eval). The models
are :mod:`.detectors`; the helpers that let the same loop run under ``torchrun`` with DDP, :mod:`.distributed`.
Imports no ``mlflow``: the flow logs what ``on_step`` and the returned values hand it."""

from __future__ import annotations

import contextlib
import io
import math
from typing import Callable

import torch
from tqdm import tqdm

from image_lineage.core.errors import LineageError
from image_lineage.data.coco.index import CategoryMapping
from image_lineage.training.detection.coco_data import to_model_input
from image_lineage.training.detection.distributed import is_main_process

# COCOeval's 12 bbox stats, in its own order (``COCOeval.stats``)
COCO_METRICS = ("mAP", "mAP_50", "mAP_75", "mAP_small", "mAP_medium", "mAP_large",
                "AR_1", "AR_10", "AR_100", "AR_small", "AR_medium", "AR_large")
# faster-coco-eval: the same COCOeval in C++ (bench/coco_eval.py checks its 12 stats against pycocotools')
EVALUATORS = ("faster-coco-eval", "pycocotools")


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
    raise LineageError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {evaluator!r}.")


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


