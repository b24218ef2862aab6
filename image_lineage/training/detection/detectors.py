"""torchvision's Faster R-CNN variants with a box predictor for the dataset's classes, and the device to train on."""

from __future__ import annotations

import os

import torch
from torchvision.models import detection as tv_detection
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from image_lineage.core import config
from image_lineage.core.errors import LineageError

MODELS = {
    "fasterrcnn_resnet50_fpn": (tv_detection.fasterrcnn_resnet50_fpn, tv_detection.FasterRCNN_ResNet50_FPN_Weights),
    "fasterrcnn_resnet50_fpn_v2": (tv_detection.fasterrcnn_resnet50_fpn_v2, tv_detection.FasterRCNN_ResNet50_FPN_V2_Weights),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (tv_detection.fasterrcnn_mobilenet_v3_large_320_fpn,
                                              tv_detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights),
}


def build_model(name: str, weights: str | None, num_classes: int, image_size: int = 0) -> torch.nn.Module:
    """A Faster R-CNN with ``num_classes`` outputs (background included).

    ``weights``: ``DEFAULT`` (torchvision's COCO weights, then a new box predictor), None (random init,
    no backbone weights either: nothing is downloaded), or a path to a state dict.
    """
    if name not in MODELS:
        raise LineageError(f"model must be one of {', '.join(MODELS)}, got {name!r}.")
    builder, weights_enum = MODELS[name]
    size = {"min_size": image_size, "max_size": image_size} if image_size else {}
    if weights is None:
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, **size)
    if weights == "DEFAULT":
        try:
            model = builder(weights=weights_enum.DEFAULT, **size)
        except (OSError, RuntimeError) as exc:  # urllib errors are OSErrors; a partial file is a RuntimeError
            raise LineageError(
                f"torchvision's pretrained weights for {name} could not be loaded ({exc}). Offline, run with "
                f"-P weights=none, or put the weights file in $TORCH_HOME/hub/checkpoints (TORCH_HOME="
                f"{config.torch_home()}), or pass -P weights=<path to a state dict>."
            ) from exc
        replace_predictor(model, num_classes)
        return model
    return load_state_dict_model(builder, weights, num_classes, size)


def load_state_dict_model(builder, path: str, num_classes: int, size: dict) -> torch.nn.Module:
    if not os.path.isfile(path):
        raise LineageError(f"weights={path!r}: no such file. Use DEFAULT, none, or a path to a state dict.")
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



def resolve_device(choice: str | None) -> torch.device:
    """``cpu`` or ``cuda`` (this process's GPU under torchrun); None picks CUDA when there is one."""
    if choice is None:
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise LineageError("-P device=cuda, but no CUDA device is visible: use device=auto or cpu.")
        return torch.device("cuda", config.local_rank())
    if choice != "cpu":
        raise LineageError(f"device must be auto, cpu or cuda, got {choice!r}.")
    return torch.device("cpu")
