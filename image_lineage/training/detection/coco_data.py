"""COCO detection data for torchvision models: datasets, targets, validation report, previews.

Targets follow torchvision's detection references (``references/detection/coco_utils.py``): crowd
annotations are left out of training targets, boxes go from COCO ``xywh`` to ``boxes_xyxy`` clipped to
the image, and degenerate boxes (zero width or height after clipping) are dropped. Labels are the
contiguous category index + 1, since torchvision's detectors reserve 0 for the background.

Images are decoded once, straight from the file bytes, with OpenCV (libjpeg-turbo), in the stored pixel
orientation that COCO boxes refer to; there is no PIL round trip and no re-encoding.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from image_lineage.core.errors import LineageError
from image_lineage.data.coco.index import CategoryMapping, CocoIndex, xywh_to_xyxy


def clip_boxes_xyxy(boxes_xyxy: torch.Tensor, width: int, height: int) -> torch.Tensor:
    boxes_xyxy = boxes_xyxy.clone().reshape(-1, 4)
    boxes_xyxy[:, 0::2] = boxes_xyxy[:, 0::2].clamp(0, width)
    boxes_xyxy[:, 1::2] = boxes_xyxy[:, 1::2].clamp(0, height)
    return boxes_xyxy


def build_target(image_id: int, width: int, height: int, boxes_xyxy: list, labels: list[int],
                 areas: list[float], iscrowd: list[bool]) -> dict[str, torch.Tensor]:
    """One target dict per image (not per annotation): boxes clipped, crowd and degenerate boxes removed."""
    keep_crowd = torch.tensor([not c for c in iscrowd], dtype=torch.bool)
    boxes_xyxy = clip_boxes_xyxy(torch.tensor(boxes_xyxy, dtype=torch.float32), width, height)
    valid = keep_crowd & (boxes_xyxy[:, 2] > boxes_xyxy[:, 0]) & (boxes_xyxy[:, 3] > boxes_xyxy[:, 1])
    return {
        "boxes": boxes_xyxy[valid],
        "labels": torch.tensor(labels, dtype=torch.int64).reshape(-1)[valid],
        "image_id": torch.tensor(image_id),
        "area": torch.tensor(areas, dtype=torch.float32).reshape(-1)[valid],
        "iscrowd": torch.zeros(int(valid.sum()), dtype=torch.int64),
    }


# RGB straight from the decoder; EXIF rotation ignored, as annotations refer to the stored pixels
DECODE_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION


def decode_rgb(data: bytes, name: str) -> torch.Tensor:
    """uint8 CHW RGB tensor from encoded bytes; a clear error naming the file when they are not an image."""
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), DECODE_FLAGS) if data else None
    if pixels is None:
        raise LineageError(f"corrupt image {name}: OpenCV cannot decode it. Replace or remove the file.")
    return torch.from_numpy(pixels).permute(2, 0, 1)


_DECODE_POOLS: dict[int, ThreadPoolExecutor] = {}


def decode_pool() -> ThreadPoolExecutor:
    """One thread pool per process (DataLoader workers are forked: a parent's threads do not follow)."""
    pid = os.getpid()
    if pid not in _DECODE_POOLS:
        _DECODE_POOLS[pid] = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="decode")
    return _DECODE_POOLS[pid]


class BatchDecoding:
    """``__getitems__``: the DataLoader fetches a whole batch in one call; OpenCV releases the GIL while
    it decodes, so the batch's images decode on all cores without worker processes (whose pickling of
    image tensors costs more than the decode on a small machine)."""

    def __getitems__(self, positions: list[int]) -> list:
        return list(decode_pool().map(self.__getitem__, positions))


class CocoDetectionDataset(BatchDecoding, torch.utils.data.Dataset):
    """(image uint8 tensor CHW, target) pairs from a checked COCO split.

    Images stay uint8 until they reach the device (:func:`to_model_input`): a quarter of the bytes
    through the DataLoader and pinned memory, and the float conversion runs where the model does.
    """

    def __init__(self, index: CocoIndex, mapping: CategoryMapping | None = None):
        self.index = index
        self.mapping = mapping or CategoryMapping.from_index(index)

    def __len__(self) -> int:
        return len(self.index.images)

    def __getitem__(self, position: int):
        image = self.index.images[position]
        path = self.index.image_path(image)
        pixels = decode_rgb(Path(path).read_bytes(), str(path))
        annotations = self.index.annotations_by_image[image["id"]]
        target = build_target(
            image["id"], pixels.shape[2], pixels.shape[1], [xywh_to_xyxy(a["bbox"]) for a in annotations],
            [self.mapping.label_of(a["category_id"]) for a in annotations],
            [a["area"] for a in annotations], [bool(a.get("iscrowd", 0)) for a in annotations],
        )
        return pixels, target


class HfDetectionDataset(BatchDecoding, torch.utils.data.Dataset):
    """The same pairs from the Hugging Face form (``coco.coco_to_hf``): the ``input=hf`` path."""

    def __init__(self, hf_dataset, mapping: CategoryMapping):
        import datasets

        # undecoded image cells ({"bytes", "path"}): bytes go to decode_rgb, no PIL in between
        self.rows = hf_dataset.cast_column("image", datasets.Image(decode=False))
        self.mapping = mapping

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int):
        row = self.rows[position]
        cell = row["image"]
        data = cell["bytes"] if cell.get("bytes") is not None else Path(cell["path"]).read_bytes()
        pixels = decode_rgb(data, cell.get("path") or f"row {position}")
        objects = row["objects"]
        target = build_target(row["image_id"], pixels.shape[2], pixels.shape[1], objects["bbox"],  # xyxy already
                              [c + 1 for c in objects["category"]], objects["area"], objects["iscrowd"])
        return pixels, target


def to_model_input(image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 CHW -> float CHW in [0, 1] on ``device`` (what torchvision's detectors expect)."""
    return image.to(device, non_blocking=True).float().div_(255)


def collate(batch):
    """Detection batches are lists: images differ in size."""
    return tuple(zip(*batch))


def draw_boxes(canvas: np.ndarray, boxes_xyxy, labels, names, color, scores=None) -> None:
    """Boxes with their class names (and scores) on an RGB uint8 HWC canvas, in place."""
    for position, (box, label) in enumerate(zip(boxes_xyxy, labels)):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        text = names[label - 1] + (f" {scores[position]:.2f}" if scores is not None else "")
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
        cv2.putText(canvas, text, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)


@torch.no_grad()
def prediction_grid(model, dataset, count: int, device, score_min: float = 0.5, cell: int = 320) -> np.ndarray | None:
    """The first ``count`` images of ``dataset`` in one RGB grid: ground truth in green, the model's
    predictions scoring at least ``score_min`` in red (for ``mlflow.log_image(key=..., step=epoch)``)."""
    count = min(count, len(dataset))
    if not count:
        return None
    model.eval()
    cells = []
    for position in range(count):
        pixels, target = dataset[position]
        (output,) = model([to_model_input(pixels, device)])
        keep = output["scores"] >= score_min
        canvas = pixels.permute(1, 2, 0).contiguous().numpy().copy()
        names = dataset.mapping.names
        draw_boxes(canvas, target["boxes"].tolist(), target["labels"].tolist(), names, (0, 200, 0))
        draw_boxes(canvas, output["boxes"][keep].cpu().tolist(), output["labels"][keep].cpu().tolist(), names,
                   (230, 0, 0), output["scores"][keep].cpu().tolist())
        scale = cell / max(canvas.shape[:2])
        resized = cv2.resize(canvas, (round(canvas.shape[1] * scale), round(canvas.shape[0] * scale)))
        padded = np.full((cell, cell, 3), 255, dtype=np.uint8)
        padded[: resized.shape[0], : resized.shape[1]] = resized
        cells.append(padded)
    columns = math.ceil(math.sqrt(count))  # near-square: the MLflow UI shows each step's image in a square cell
    rows = [np.hstack(cells[i : i + columns] + [np.full((cell, cell, 3), 255, np.uint8)] * (columns - len(cells[i : i + columns])))
            for i in range(0, count, columns)]
    return np.vstack(rows)


def draw_previews(dataset: CocoDetectionDataset, folder: Path, count: int) -> list[Path]:
    """Annotated previews (boxes and names drawn with OpenCV) of the first ``count`` images."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for position in range(min(count, len(dataset))):
        pixels, target = dataset[position]
        canvas = cv2.cvtColor(pixels.permute(1, 2, 0).contiguous().numpy(), cv2.COLOR_RGB2BGR)
        draw_boxes(canvas, target["boxes"].tolist(), target["labels"].tolist(), dataset.mapping.names, (0, 0, 255))  # BGR red
        # JPEG: the PNG previews of 12 COCO photos took 7.2 MB, more than the photos they show
        path = folder / f"{int(target['image_id'])}.jpg"
        cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
        written.append(path)
    return written
