"""Faster R-CNN on COCO data: the models, the data the loop reads, the loop, and DDP helpers."""
