"""Fine-tune a torchvision Faster R-CNN on a COCO folder, logging the dataset and the model in one run.

The command ``image-lineage coco-finetune`` (:mod:`image_lineage.cli`), as ``mlflow run . -e coco_finetune`` runs it.

    mlflow run . -e coco_finetune -P weights=none -P model=fasterrcnn_mobilenet_v3_large_320_fpn --env-manager local
    python -m entrypoints.coco_finetune --nproc-per-node 2 --data-dir coco/val500 --device cuda   # DDP via torchrun
"""

from image_lineage.cli import entry_point

build_parser, main = entry_point("coco_finetune")

if __name__ == "__main__":
    raise SystemExit(main())
