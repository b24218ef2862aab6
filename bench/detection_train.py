"""Detection training throughput: images per second for one model, batch size and AMP setting.

Trains on the COCO folder (default: ../shared/data/coco_tiny, 80 real train images) with the same engine
as ``coco_finetune`` (``train_one_epoch``), in an MLflow run with system metrics on, so a GPU
run also shows whether ``system/gpu_*`` metrics reached the run. Baseline: the same configuration with
batch size 1 and AMP off (the common loop), measured in this same run.

    python bench/detection_train.py --model fasterrcnn_resnet50_fpn --batch-size 8 --amp on --weights none
    python bench/detection_train.py --model fasterrcnn_mobilenet_v3_large_320_fpn --batch-size 4 --device cpu

Goal on an H100: fasterrcnn_resnet50_fpn, batch 8, AMP: >= 40 images/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_lineage.cli.arguments import optional
from image_lineage.data.coco.index import CategoryMapping
from image_lineage.data.coco.index import index_split
from image_lineage.data.coco.layout import find_coco_splits
from image_lineage.training.detection.coco_data import CocoDetectionDataset, collate
from image_lineage.training.detection.detectors import MODELS, build_model, resolve_device
from image_lineage.training.detection.engine import train_one_epoch

COCO_TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_tiny"


def images_per_second(index, mapping, model_name, weights, batch_size, amp, device, epochs, image_size) -> float:
    torch.manual_seed(0)
    model = build_model(model_name, weights, mapping.num_classes, image_size).to(device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type) if amp else None
    loader = torch.utils.data.DataLoader(CocoDetectionDataset(index, mapping), batch_size=batch_size, shuffle=True,
                                         collate_fn=collate, pin_memory=device.type == "cuda", drop_last=True)
    train_one_epoch(model, optimizer, loader, device, 0, scaler)  # warm-up: cuDNN autotune, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_one_epoch(model, optimizer, loader, device, epoch, scaler)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return epochs * len(loader) * batch_size / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=COCO_TINY)
    parser.add_argument("--model", default="fasterrcnn_resnet50_fpn", choices=sorted(MODELS))
    parser.add_argument("--weights", type=optional, default="none", help="none (random init) or DEFAULT (torchvision's, needs them cached)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--amp", choices=("on", "off"), default="on")
    parser.add_argument("--device", type=optional, default="auto", help="auto, cpu or cuda")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=0, help="0: the model's default resize")
    parser.add_argument("--skip-baseline", action="store_true", help="only the given configuration")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    index = index_split(find_coco_splits(args.data_dir)["train"])
    mapping = CategoryMapping.from_index(index)
    common = (args.model, args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("bench_detection_train")
        amp = args.amp == "on" and device.type == "cuda"  # autocast here is CUDA's
        with mlflow.start_run(log_system_metrics=True) as run:
            ours = images_per_second(index, mapping, *common, args.batch_size, amp, device, args.epochs, args.image_size)
            mlflow.log_metric("train_images_per_second", ours)
            baseline = None if args.skip_baseline else images_per_second(
                index, mapping, *common, 1, False, device, args.epochs, args.image_size)
        metrics = mlflow.get_run(run.info.run_id).data.metrics
    gpu_keys = sorted(k for k in metrics if k.startswith("system/gpu"))
    print(f"{args.model} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{len(index.images)} images, {args.epochs} timed epochs")
    print(f"batch {args.batch_size}, AMP {'on' if amp else 'off'}: {ours:8.1f} images/s")
    if baseline:
        print(f"batch 1, AMP off:     {baseline:8.1f} images/s")
        print(f"ratio = {ours / baseline:.1f}")
    print(f"system/gpu_* metrics in the run: {', '.join(gpu_keys) if gpu_keys else 'none (no GPU)'}")


if __name__ == "__main__":
    main()
