"""The one ingestion path every flow takes::

    source kind -> image pass -> digest -> quality check -> store or link -> MLflow dataset input

1-3. :func:`read_source` (or :func:`image_lineage.data.versions.read_version` for one version of a folder of
     versions): the source's kind reads each split's files once through the image pass, and builds the
     split's content digest from what that pass returned;
4.   :func:`check_in_run`: the leakage check over every split's images, logged in the run, then the gate
     (``on_leakage``); a result an earlier run recorded for the same digest is reused, not recomputed;
5.   :func:`image_lineage.tracking.snapshots.store_or_link`: the data's files are uploaded by the first run of
     a digest on the tracking server, and linked to by every later one;
6.   :func:`log_split_inputs`: each split as an MLflow dataset input with the content digest.

The flows (a folder version, the Hugging Face form, the COCO fine-tune, the check, ``main``'s steps) each
call these stages; none re-implements one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import mlflow

from image_lineage.core.errors import LeakageError
from image_lineage.core.names import (
    TAG_DIGEST, TAG_IGNORED, TAG_QUALITY_STATUS, TAG_SKIPPED_FOLDERS, TAG_SOURCE_KIND, TAG_SOURCE_URI,
)
from image_lineage.data.kinds import (
    LoadedSplit, LoadOptions, SplitImage, combined_digest, kind_of, load_splits, passed_over_folders,
)
from image_lineage.data.object_store import is_object_uri
from image_lineage.quality.gate import apply_gate
from image_lineage.quality.pairs import DEFAULT_THRESHOLD, QualityReport, find_pairs
from image_lineage.quality.report import report_html
from image_lineage.tracking import datasets as forms
from image_lineage.tracking.artifacts import staging, upload_folder
from image_lineage.tracking.dataset_sources import mlflow_source
from image_lineage.tracking.runs import log_values

LOGGER = logging.getLogger(__name__)


# ---------------------------------------------------------------- 1-3: source kind, image pass, digest


@dataclass
class Ingestion:
    """Every requested split of a source, read: digests, images, what was passed over."""

    source: str
    kind: str  # the source kind's name (tag dataset.source_kind)
    splits: list[LoadedSplit]
    passed_over: list[dict] = field(default_factory=list)  # parts of the source not logged, each {"path", "reason"}

    @property
    def digest(self) -> str:
        return combined_digest({s.split: s.digest for s in self.splits})

    @property
    def reads(self) -> list[tuple[dict, str, str]]:
        """What was read, for the run's OpenLineage events: (source fields, split, digest) of each split."""
        return split_reads(self.splits)

    @property
    def images(self) -> list[SplitImage] | None:
        """Every split's images for the leakage check; None when a split's images are not files."""
        if any(s.images is None for s in self.splits):
            return None
        return [image for s in self.splits for image in s.images]


def split_reads(splits: list[LoadedSplit]) -> list[tuple[dict, str, str]]:
    return [(loaded.source.fields, loaded.split, loaded.digest) for loaded in splits]


def read_source(source: str, split: str = "all", options: LoadOptions | None = None,
                targets: str | None = None) -> Ingestion:
    """Stages 1-3 for ``source``: each requested split read by its kind (a bad source stops here, before
    any run is opened)."""
    splits = load_splits(source, split, options, targets)
    return Ingestion(source, kind_of(source).name, splits, passed_over_folders(source, split))


# ---------------------------------------------------------------- 4: the quality check


@dataclass
class CheckOutcome:
    """What the leakage check found, and what is left to log with the run's summary (a recorded result
    rides in the summary's request instead of one of its own)."""

    status: str
    metrics: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    report: QualityReport | None = None


def check_in_run(run: mlflow.ActiveRun, images, image_check: str, on_leakage: str,
                 threshold: int = DEFAULT_THRESHOLD, earlier: mlflow.entities.Run | None = None,
                 files: bool = True, engine: str = "local") -> CheckOutcome:
    """Find the pairs among ``images`` (a list, or a callable that lists them: not called when an earlier
    result stands), log them in ``run`` (with ``files``: ``quality/pairs.csv`` and ``quality/report.html``),
    then apply ``on_leakage`` (``fail`` raises: the run ends FAILED with its report logged). ``earlier``: a
    run of the same digest whose recorded result stands (the same bytes give the same pairs): its status and
    metrics are returned to log with the summary, unless the gate stops the run."""
    recorded = recorded_quality(earlier) if earlier is not None else None
    if recorded is not None:
        metrics, status = recorded
        try:
            apply_gate(status, on_leakage, where=f"run {earlier.info.run_id}")
        except LeakageError:
            log_values(run, metrics=metrics, tags={TAG_QUALITY_STATUS: status})  # the FAILED run says why
            raise
        return CheckOutcome(status, metrics, {TAG_QUALITY_STATUS: status})
    images = images() if callable(images) else images
    report = find_pairs(images, image_check, threshold, engine)
    log_quality(report, images, run, files)
    apply_gate(report.status, on_leakage, report.leakage_summary())
    return CheckOutcome(report.status, report=report)


def log_quality(report: QualityReport, images: list[SplitImage], run: mlflow.ActiveRun, files: bool = True) -> None:
    """Metrics and tag ``quality.status``, and with ``files``, ``quality/pairs.csv`` and ``quality/report.html``
    (a re-log of an already-logged digest leaves them in the run that holds its files)."""
    if files:
        with staging("quality_") as folder:
            report.pairs.to_csv(folder / "pairs.csv", index=False)
            (folder / "report.html").write_text(report_html(report, {image.path: image.file for image in images}))
            upload_folder(folder, "quality")
    log_values(run, metrics=report.metrics, tags={TAG_QUALITY_STATUS: report.status})


def recorded_quality(run: mlflow.entities.Run) -> tuple[dict[str, float], str] | None:
    """(quality metrics, status) an earlier run recorded, or None when it ran no leakage check."""
    status = run.data.tags.get(TAG_QUALITY_STATUS)
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("quality/")}
    return (metrics, status) if status and metrics else None


# ---------------------------------------------------------------- 6: dataset inputs, and the tags that go with them


FORMS = {"hf": forms.hf_form, "manifest": forms.manifest_table, "coco": forms.coco_table}


def split_inputs(splits: list[LoadedSplit], name: str, form: str, quality_status: str | None = None,
                 snapshot_uri: str | None = None, context: str | dict[str, str] = "training",
                 sources: dict | None = None, tag: str = "split") -> list[tuple[object, str, dict]]:
    """Each split as an MLflow dataset in ``form`` (``hf``, ``manifest`` or ``coco``) with its context
    (``context``, or ``context[split]``) and an input tag ``tag`` naming the split; its source records
    where the tracking server stores its files (``snapshot_uri``). ``sources``: a source the flow made, per split."""
    inputs = []
    for loaded in splits:
        source = (sources or {}).get(loaded.split) or mlflow_source(loaded.source, snapshot_uri)
        dataset = FORMS[form](loaded, name, source, quality_status)
        role = context if isinstance(context, str) else context[loaded.split]
        inputs.append((dataset, role, {tag: loaded.split}))
    return inputs


def log_split_inputs(run_id: str, inputs: list[tuple[object, str, dict]]) -> dict[str, object]:
    """Stage 6: the inputs in one request; returns {split: MLflow dataset} (models are linked to them)."""
    forms.log_inputs(run_id, inputs)
    return {next(iter(tags.values())): dataset for dataset, _, tags in inputs}


def digest_tags(splits: list[LoadedSplit], per_split: bool = True) -> dict[str, str]:
    """``dataset.digest`` (the splits combined) and ``dataset.digest.<split>`` for each split."""
    tags = {TAG_DIGEST: combined_digest({s.split: s.digest for s in splits})}
    if per_split:
        tags.update({f"{TAG_DIGEST}.{s.split}": s.digest for s in splits})
    return tags


def source_tags(ingestion: Ingestion) -> dict[str, str]:
    """Where the data came from and what was left out: kind, ``s3://`` URI, ignored files, skipped folders."""
    tags = {TAG_SOURCE_KIND: ingestion.kind, TAG_IGNORED: str(sum(len(s.ignored) for s in ingestion.splits))}
    if is_object_uri(ingestion.source):
        tags[TAG_SOURCE_URI] = ingestion.source
    if ingestion.passed_over:
        tags[TAG_SKIPPED_FOLDERS] = json.dumps(ingestion.passed_over)
    return tags
