"""COCOeval speed: pycocotools against faster-coco-eval on a COCO-val-sized set, same detections.

Builds a synthetic COCO val2017-sized ground truth (5,000 images, ~36,000 boxes over 80 categories, box
sizes spread over COCO's small/medium/large ranges, a few crowd boxes) and fixed detections (ground truth
jittered at unrounded float positions with random scores, plus false positives), then runs both
evaluators through ``image_lineage.training.detection.engine.coco_bbox_stats`` in this one process, checks that the 12
stats agree to 1e-9, and prints the ratio.

    python bench/coco_eval.py [--images 5000] [--seed 0]

Goal: faster-coco-eval >= 5x pycocotools with equal stats (then it is coco_finetune's default evaluator).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_lineage.data.coco.index import CocoIndex
from image_lineage.data.coco.layout import CocoSplit
from image_lineage.training.detection.engine import COCO_METRICS, EVALUATORS, coco_bbox_stats, coco_ground_truth


def synthetic_index(images: int, rng: random.Random) -> CocoIndex:
    """A val2017-sized split in memory: ~7.3 boxes per image (COCO val's mean), 80 categories."""
    categories = [{"id": i + 1 + i // 10, "name": f"category_{i}"} for i in range(80)]  # non-contiguous ids, as COCO's
    image_rows, by_image, next_id = [], {}, 1
    for image_id in range(1, images + 1):
        width, height = rng.choice([(640, 480), (480, 640), (640, 427), (500, 375)])
        image_rows.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": width, "height": height})
        by_image[image_id] = []
        for _ in range(round(rng.expovariate(1 / 7.3))):
            side = rng.choice([rng.uniform(4, 32), rng.uniform(32, 96), rng.uniform(96, 400)])  # small, medium, large
            w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, max(1, width - w)), rng.uniform(0, max(1, height - h))
            by_image[image_id].append({"id": next_id, "image_id": image_id, "category_id": rng.choice(categories)["id"],
                                       "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.01)})
            next_id += 1
    return CocoIndex(CocoSplit("val2017", Path("instances_val2017.json"), Path("val2017")), image_rows, by_image, categories)


def fixed_detections(index: CocoIndex, rng: random.Random) -> list[dict]:
    detections = []
    category_ids = [c["id"] for c in index.categories]
    for image in index.images:
        for a in index.annotations_by_image[image["id"]]:
            if rng.random() < 0.85:  # some objects are missed
                x, y, w, h = a["bbox"]
                detections.append({"image_id": image["id"], "category_id": a["category_id"], "score": rng.random(),
                                   "bbox": [x + rng.gauss(0, 3), y + rng.gauss(0, 3), w * rng.uniform(0.85, 1.15),
                                            h * rng.uniform(0.85, 1.15)]})
        for _ in range(rng.randrange(4)):  # false positives
            detections.append({"image_id": image["id"], "category_id": rng.choice(category_ids), "score": rng.random() / 2,
                               "bbox": [rng.uniform(0, 500), rng.uniform(0, 350), rng.uniform(8, 200), rng.uniform(8, 200)]})
    return detections


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    index = synthetic_index(args.images, rng)
    detections = fixed_detections(index, rng)
    boxes = sum(len(v) for v in index.annotations_by_image.values())
    print(f"{len(index.images)} images, {boxes} ground-truth boxes, 80 categories, {len(detections)} detections", flush=True)
    ids = [image["id"] for image in index.images]
    seconds, stats = {}, {}
    for evaluator in reversed(EVALUATORS):  # pycocotools first
        started = time.perf_counter()
        stats[evaluator] = coco_bbox_stats(coco_ground_truth(index, evaluator), detections, ids, evaluator)
        seconds[evaluator] = time.perf_counter() - started
        print(f"{evaluator:<18} {seconds[evaluator]:8.2f} s", flush=True)
    worst = max(abs(stats["faster-coco-eval"][k] - stats["pycocotools"][k]) for k in COCO_METRICS)
    print("stat           pycocotools   faster-coco-eval")
    for key in COCO_METRICS:
        print(f"{key:<12} {stats['pycocotools'][key]:13.10f} {stats['faster-coco-eval'][key]:18.10f}")
    print(f"largest difference over the 12 stats: {worst:.3g}  ({'agree' if worst <= 1e-9 else 'DIFFER'} to 1e-9)")
    print(f"ratio pycocotools / faster-coco-eval = {seconds['pycocotools'] / seconds['faster-coco-eval']:.1f}   (goal >= 5)")


if __name__ == "__main__":
    main()
