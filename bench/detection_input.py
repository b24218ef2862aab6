"""Detection input pipeline: ours vs the common loop, images per second on real COCO (coco_tiny).

The common loop (the one the coco_finetune issue names): per image, PIL opens it, re-encodes it to JPEG
bytes, ``cv2.imdecode`` decodes those, the result becomes a tensor; targets are built as one dict per
annotation from pycocotools; batches of 1. Ours: ``CocoDetectionDataset`` (one decode of the file bytes,
one target dict per image with ``boxes_xyxy``) under a DataLoader with batches, a batch's images decoded on
all cores by threads (``__getitems__``); its images stay uint8 and
become floats on the training device (``to_model_input``), so the timing ends, for both, at a batch ready
to go to the device. Both read the same
160 real images (train + val of ../shared/data/coco_tiny), ``--passes`` times, in this one run.

    python bench/detection_input.py [--passes 3] [--batch-size 8] [--num-workers 0]

Goal: ratio ours/common >= 3.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_lineage.data.coco.index import CocoIndex, index_split
from image_lineage.data.coco.layout import find_coco_splits
from image_lineage.training.detection.coco_data import CocoDetectionDataset, collate

COCO_TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_tiny"


def common_loop(index: CocoIndex, reference) -> int:
    """Per image: PIL -> JPEG bytes -> cv2.imdecode -> tensor; a target dict per annotation; batch 1."""
    count = 0
    for image in index.images:
        with Image.open(index.image_path(image)) as picture:
            buffer = io.BytesIO()
            picture.convert("RGB").save(buffer, format="JPEG")
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        tensor = torch.from_numpy(decoded).permute(2, 0, 1).float() / 255
        targets = []
        for annotation in reference.loadAnns(reference.getAnnIds(imgIds=image["id"])):
            x, y, w, h = annotation["bbox"]
            targets.append({"boxes": torch.tensor([[x, y, x + w, y + h]]), "labels": torch.tensor([annotation["category_id"]]),
                            "image_id": torch.tensor(image["id"])})
        batch = ([tensor], [targets])
        count += len(batch[0])
    return count


def our_loaders(indexes: list[CocoIndex], batch_size: int, num_workers: int) -> list:
    """As coco_finetune builds them: one per split, batched, worker processes (if any) kept across epochs."""
    return [torch.utils.data.DataLoader(CocoDetectionDataset(index), batch_size=batch_size, num_workers=num_workers,
                                        collate_fn=collate, persistent_workers=num_workers > 0) for index in indexes]


def our_loop(loaders: list) -> int:
    return sum(len(images) for loader in loaders for images, _ in loader)


def images_per_second(work, passes: int) -> float:
    started, count = time.perf_counter(), 0
    for _ in range(passes):
        count += work()
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=COCO_TINY)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader worker processes; 0: batches decode on threads in the main process")
    args = parser.parse_args(argv)
    from pycocotools.coco import COCO

    indexes = [index_split(split) for split in find_coco_splits(args.data_dir).values()]
    with contextlib.redirect_stdout(io.StringIO()):
        references = [COCO(str(index.split.annotation_file)) for index in indexes]
    total = sum(len(index.images) for index in indexes)
    print(f"{args.data_dir}: {total} images, {args.passes} passes, ours: batch {args.batch_size}, {args.num_workers} workers")
    common = images_per_second(lambda: sum(common_loop(i, r) for i, r in zip(indexes, references)), args.passes)
    loaders = our_loaders(indexes, args.batch_size, args.num_workers)
    our_loop(loaders)  # warm-up pass: starts the threads (and workers, if any) once, as a first epoch does
    ours = images_per_second(lambda: our_loop(loaders), args.passes)
    print(f"common loop (PIL -> JPEG -> cv2.imdecode, target per annotation, batch 1): {common:7.1f} images/s")
    print(f"ours (one decode, one target per image, batched):                        {ours:7.1f} images/s")
    print(f"ratio ours/common = {ours / common:.1f}   (goal >= 3)")


if __name__ == "__main__":
    main()
