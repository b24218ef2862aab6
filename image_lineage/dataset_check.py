"""The leakage check of a whole dataset, as its own run (``check_dataset``) or inside a logging run.

The source kind (:mod:`image_lineage.source_kinds`) lists every split's images; :mod:`image_lineage.quality`
finds the pairs, logs them and applies ``on_leakage``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import mlflow

from image_lineage.core import TAG_SKIPPED_FOLDERS, DatasetError
from image_lineage.perceptual import DEFAULT_THRESHOLD
from image_lineage.quality import QualityImage, QualityReport, apply_gate, find_pairs, log_quality, require_on_leakage
from image_lineage.source_kinds import LoadOptions, kind_of
from image_lineage.source_kinds.base import dataset_name_of, passed_over_folders
from image_lineage.tracking import log_values, start_run


@dataclass
class CheckRequest:
    source: str = "image_dataset/v2"
    image_check: str = "structure"
    on_bad_image: str = "fail"
    on_leakage: str = "warn"
    threshold: int = DEFAULT_THRESHOLD
    run_name: str | None = None  # None: check_<dataset name>
    experiment_name: str | None = None


def source_images(source: str, options: LoadOptions) -> list[QualityImage]:
    """Every image of every split of ``source``, read (with perceptual hashes) through the image pass."""
    kind = kind_of(source)
    images = []
    for split, handle in kind.splits(source, "all").items():
        listed = kind.list_images(split, handle, options)
        if listed is None:
            raise DatasetError(f"the leakage check reads image files: {kind.name} sources ({source}) are not "
                               f"supported. Use a local image folder or COCO folder.")
        images.extend(listed)
    if not images:
        raise DatasetError(f"{source} holds no images to check.")
    return images


def check_in_run(run: mlflow.ActiveRun, images: list[QualityImage], image_check: str, on_leakage: str,
                 threshold: int = DEFAULT_THRESHOLD) -> QualityReport:
    """Find the pairs, log them in ``run``, then apply ``on_leakage`` (``fail`` raises: the run ends FAILED
    with the report already logged)."""
    report = find_pairs(images, image_check, threshold)
    log_quality(report, images, run)
    apply_gate(report, on_leakage)
    return report


def check_dataset(request: CheckRequest) -> tuple[str, QualityReport]:
    """The ``check_dataset`` entry point: one run holding the leakage check of ``request.source``."""
    require_on_leakage(request.on_leakage)
    options = LoadOptions(None, request.image_check, request.on_bad_image, perceptual=True)
    images = source_images(request.source, options)
    passed_over = passed_over_folders(request.source)
    run_name = request.run_name or f"check_{dataset_name_of(request.source)}"
    with start_run(request.experiment_name, run_name) as run:
        log_values(run, params={"source": request.source, "threshold": request.threshold, "num_images": len(images),
                                "splits": ",".join(sorted({image.split for image in images}))},
                   tags={TAG_SKIPPED_FOLDERS: json.dumps(passed_over)} if passed_over else None)
        report = check_in_run(run, images, request.image_check, request.on_leakage, request.threshold)
    return run.info.run_id, report
