"""The leakage check of a whole dataset as its own run (``check_dataset``): the ingestion path's first four
stages (:mod:`image_lineage.flows.ingest`) over every split of the source, nothing stored."""

from __future__ import annotations

import json
from dataclasses import dataclass

from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_SKIPPED_FOLDERS
from image_lineage.data.kinds import LoadOptions, dataset_name_of, kind_of
from image_lineage.flows.ingest import check_in_run, digest_tags, read_source
from image_lineage.quality.gate import require_on_leakage
from image_lineage.quality.pairs import DEFAULT_THRESHOLD, QualityReport
from image_lineage.tracking.runs import log_values, start_run


@dataclass
class CheckRequest:
    source: str = "image_dataset/v2"
    image_check: str = "structure"
    engine: str = "local"  # where the image pass runs: local (this machine) or spark (a Spark job)
    on_bad_image: str = "fail"
    on_leakage: str = "warn"
    threshold: int = DEFAULT_THRESHOLD
    run_name: str | None = None  # None: check_<dataset name>
    experiment_name: str | None = None


def check_dataset(request: CheckRequest) -> tuple[str, QualityReport]:
    """One run holding the leakage check of ``request.source``; returns (run id, the report)."""
    require_on_leakage(request.on_leakage)
    kind = kind_of(request.source)
    if not kind.image_files:
        raise LineageError(f"the leakage check reads image files: {kind.name} sources ({request.source}) are not "
                           f"supported. Use a local image folder or COCO folder.")
    ingestion = read_source(request.source, "all", LoadOptions(None, request.image_check, request.on_bad_image,
                                                                 perceptual=True, engine=request.engine))
    images = ingestion.images
    if not images:
        raise LineageError(f"{request.source} holds no images to check.")
    run_name = request.run_name or f"check_{dataset_name_of(request.source)}"
    with start_run(request.experiment_name, run_name, job="check_dataset", reads=ingestion.reads) as run:
        log_values(run, params={"source": request.source, "threshold": request.threshold, "num_images": len(images),
                                "splits": ",".join(sorted({image.split for image in images}))},
                   tags={**digest_tags(ingestion.splits),  # which bytes were checked
                         **({TAG_SKIPPED_FOLDERS: json.dumps(ingestion.passed_over)} if ingestion.passed_over else {})})
        outcome = check_in_run(run, images, request.image_check, request.on_leakage, request.threshold,
                               engine=request.engine)
    return run.info.run_id, outcome.report
