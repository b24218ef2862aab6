"""Fine-tune a torchvision Faster R-CNN on a COCO folder, logging the dataset and the model in one run.

    mlflow run . -e coco_finetune -P weights=none -P model=fasterrcnn_mobilenet_v3_large_320_fpn --env-manager local
    python -m entrypoints.coco_finetune --nproc-per-node 2 --data-dir coco/val500 --device cuda   # DDP via torchrun
"""

from __future__ import annotations

import argparse
import sys

from image_lineage.cli import add_image_arguments, add_snapshot_argument, optional, parse_count, run_on_processes
from image_lineage.coco_finetune import INPUTS, FinetuneRequest, run_finetune
from image_lineage.detection import EVALUATORS, MODELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a Faster R-CNN on a COCO folder. Logs the annotation files, images (or one archive "
        "per split), previews, class balance, validation report, the dataset input (content digest), per-step "
        "loss components, per-epoch COCOeval bbox mAP/mAP_50/mAP_75/small/medium/large, system metrics (GPU "
        "via pynvml), a checkpoint per epoch, and the model, registered and tagged with digest and categories."
    )
    add = parser.add_argument
    add("--data-dir", default="coco/sample", help="COCO folder: annotations/instances_<name>.json + <name>/")
    add("--train-split", default="train", help="split (train, validation) or layout name (train2017)")
    add("--val-split", default="validation", help="held out from the train split when absent")
    add("--input", choices=INPUTS, default="coco", help="coco: pycocotools-style reader; hf: the Hugging Face form")
    add("--model", choices=sorted(MODELS), default="fasterrcnn_resnet50_fpn")
    add("--weights", type=optional, default="DEFAULT", help="DEFAULT (torchvision COCO weights), none, or a state-dict path")
    add("--epochs", type=parse_count, default=1)
    add("--batch-size", type=parse_count, default=2)
    add("--lr", type=float, default=0.005)
    add("--num-workers", type=parse_count, default=0,
        help="DataLoader processes; 0 is usually fastest: each batch's images decode on threads in this process")
    add("--max-images", type=parse_count, default=0, help="images per split, 0 = all")
    add("--image-size", type=parse_count, default=0, help="resize so both sides fit this; 0 = the model's default")
    add("--amp", type=optional, default="auto", help="mixed precision: on, off, or auto (on with CUDA)")
    add("--device", type=optional, default="auto", help="cpu, cuda, or auto (cuda when there is one)")
    add("--seed", type=parse_count, default=42)
    add("--resume-from", type=optional, default="none", help="run id whose last checkpoint to continue from (next epoch); none")
    add("--register-as", default="fasterrcnn_resnet50_fpn_coco_2017_model", help="registered model name")
    add("--eval-every", type=parse_count, default=1, help="COCOeval every N epochs (and after the last)")
    add("--evaluator", choices=EVALUATORS, default=EVALUATORS[0],
        help="COCOeval implementation: faster-coco-eval (C++, same numbers) or pycocotools")
    add("--image-artifacts-max", type=parse_count, default=200,
        help="up to this many images per split are uploaded as files; more go into one archive")
    add("--previews", type=parse_count, default=8, help="annotated preview images per split")
    add("--preview-images", type=parse_count, default=8,
        help="validation images drawn with predictions (score >= 0.5) and ground truth after each evaluation, "
        "logged as one image per epoch under key val_predictions")
    add_image_arguments(parser)
    add_snapshot_argument(parser)
    add("--nproc-per-node", type=parse_count, default=1,
        help="processes to train on (DDP): more than 1 starts them with torchrun; only rank 0 talks to MLflow")
    add("--run-name", default="coco_finetune")
    add("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = vars(build_parser().parse_args(argv))
    nproc = args.pop("nproc_per_node")
    request = FinetuneRequest(**args)
    return run_on_processes("entrypoints.coco_finetune", argv, nproc, lambda: run_finetune(request))


if __name__ == "__main__":
    raise SystemExit(main())
