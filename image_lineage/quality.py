"""The leakage check: exact and near-duplicate images, across splits (leakage) and across labels.

Every image of the dataset is listed with its split and label (:class:`QualityImage`); the image pass
gives each one its sha256 and perceptual hashes (:mod:`image_lineage.perceptual`) in the read that already
hashes it, cached by sha256, so re-checking an unchanged folder decodes nothing. Pairs are:

* ``exact_duplicate``: the same bytes (sha256) at two paths;
* ``near_duplicate``: different bytes, perceptual distance within the threshold (resized, re-encoded,
  cropped by a few percent, brightened copies);

and a pair is also ``leakage`` when its two images sit in different splits, and a ``label_conflict`` when
they carry different labels (classification) or, for detection, different annotations.

The run gets metrics ``quality/exact_duplicate_pairs``, ``quality/near_duplicate_pairs``,
``quality/leakage_pairs``, ``quality/label_conflicts``, tag ``quality.status`` (``clean``, ``duplicates``,
``leakage``), and artifacts ``quality/pairs.csv`` and ``quality/report.html`` (each flagged pair side by
side as thumbnails). ``on_leakage`` = ``warn`` | ``fail`` | ``ignore`` decides what leakage does.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from PIL import Image

from image_lineage.core import ON_LEAKAGE_CHOICES, TAG_QUALITY_STATUS, LineageError
from image_lineage.image_pass import ImageFacts, read_images
from image_lineage.perceptual import DEFAULT_THRESHOLD, near_pairs
from image_lineage.tracking import log_values, upload_folder

LOGGER = logging.getLogger(__name__)

PAIR_COLUMNS = ["path_a", "path_b", "split_a", "split_b", "label_a", "label_b", "kind", "distance", "leakage",
                "label_conflict"]
THUMBNAIL = 160
REPORT_PAIRS_MAX = 500  # thumbnails in the HTML report; pairs.csv lists every pair


class LeakageError(LineageError):
    """The dataset leaks between splits and ``on_leakage=fail`` was asked for."""


@dataclass(frozen=True)
class QualityImage:
    path: str  # as the report shows it: relative to the dataset, e.g. "val/cat/cat_03.jpg"
    file: str  # the file to read
    split: str
    label: str | None = None  # classification label; None for detection images
    annotations: str | None = None  # detection: the image's canonical annotations, to compare copies


@dataclass
class QualityReport:
    pairs: pd.DataFrame  # PAIR_COLUMNS, one row per flagged pair
    images: int
    threshold: int

    @property
    def metrics(self) -> dict[str, int]:
        kinds = self.pairs["kind"]
        return {
            "quality/exact_duplicate_pairs": int((kinds == "exact_duplicate").sum()),
            "quality/near_duplicate_pairs": int((kinds == "near_duplicate").sum()),
            "quality/leakage_pairs": int(self.pairs["leakage"].sum()),
            "quality/label_conflicts": int(self.pairs["label_conflict"].sum()),
        }

    @property
    def status(self) -> str:
        if self.pairs["leakage"].any():
            return "leakage"
        return "duplicates" if len(self.pairs) else "clean"


def find_pairs(images: list[QualityImage], image_check: str = "structure",
               threshold: int = DEFAULT_THRESHOLD) -> QualityReport:
    """Every exact and near-duplicate pair among ``images`` (bad images were left out by the caller)."""
    facts = read_images([image.file for image in images], image_check, perceptual=True)
    usable = [(image, fact) for image, fact in zip(images, facts) if isinstance(fact, ImageFacts)]
    rows = []
    by_sha = defaultdict(list)
    for position, (_, fact) in enumerate(usable):
        by_sha[fact.sha256].append(position)
    for group in by_sha.values():
        rows.extend(pair_row(usable[a][0], usable[b][0], "exact_duplicate", 0) for i, a in enumerate(group) for b in group[i + 1:])
    hashes = np.array([fact.phash for _, fact in usable], dtype=np.uint64).reshape(-1, 3)
    for (a, b), distance in sorted(near_pairs(hashes, threshold).items()):
        if usable[a][1].sha256 != usable[b][1].sha256:
            rows.append(pair_row(usable[a][0], usable[b][0], "near_duplicate", distance))
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    order = pairs.assign(rank=~pairs["leakage"]).sort_values(["rank", "distance", "path_a", "path_b"], kind="stable")
    return QualityReport(order.drop(columns="rank").reset_index(drop=True), len(usable), threshold)


def pair_row(a: QualityImage, b: QualityImage, kind: str, distance: int) -> list:
    if (a.split, a.path) > (b.split, b.path):
        a, b = b, a
    if a.annotations is not None and b.annotations is not None:
        # detection: the same bytes must carry the same boxes; a resized copy, at least the same categories
        conflict = a.annotations != b.annotations if kind == "exact_duplicate" else categories(a) != categories(b)
    else:
        conflict = a.label is not None and b.label is not None and a.label != b.label
    return [a.path, b.path, a.split, b.split, a.label, b.label, kind, distance, a.split != b.split, bool(conflict)]


def categories(image: QualityImage) -> list[str]:
    return sorted(line.split("\t", 1)[0] for line in (image.annotations or "").splitlines())


# ---------------------------------------------------------------- in the run


def log_quality(report: QualityReport, images: list[QualityImage], run: mlflow.ActiveRun, files: bool = True) -> None:
    """Metrics and tag ``quality.status`` in the active run, and with ``files``, ``quality/pairs.csv`` and
    ``quality/report.html`` (a re-log of an already-logged digest leaves them in the snapshot run)."""
    if files:
        with tempfile.TemporaryDirectory(prefix="quality_") as staging:
            report.pairs.to_csv(Path(staging) / "pairs.csv", index=False)
            (Path(staging) / "report.html").write_text(report_html(report, {image.path: image.file for image in images}))
            upload_folder(staging, "quality")
    log_values(run, metrics=report.metrics, tags={TAG_QUALITY_STATUS: report.status})


def apply_gate(report: QualityReport, on_leakage: str) -> None:
    """``warn``: log the first leaking pairs; ``fail``: raise, naming them and the report; ``ignore``: nothing."""
    require_on_leakage(on_leakage)
    leaking = report.pairs[report.pairs["leakage"]]
    if leaking.empty or on_leakage == "ignore":
        return
    first = "; ".join(f"{r.path_a} ({r.split_a}) ~ {r.path_b} ({r.split_b}), {r.kind.replace('_', ' ')}"
                      for r in leaking.head(3).itertuples())
    message = (f"{len(leaking)} image pair(s) leak between splits, e.g. {first}. See quality/report.html and "
               f"quality/pairs.csv in the run.")
    if on_leakage == "fail":
        raise LeakageError(f"{message} Remove the copies from one split, or pass -P on_leakage=warn to go on.")
    LOGGER.warning("%s", message)


def recorded_quality(run: mlflow.entities.Run) -> tuple[dict[str, float], str] | None:
    """(quality metrics, status) an earlier run recorded, or None when it ran no leakage check."""
    status = run.data.tags.get(TAG_QUALITY_STATUS)
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("quality/")}
    return (metrics, status) if status and metrics else None


def apply_recorded_gate(status: str, on_leakage: str, where: str) -> None:
    """:func:`apply_gate` for a result recorded earlier, whose report lives in ``where``."""
    require_on_leakage(on_leakage)
    if status != "leakage" or on_leakage == "ignore":
        return
    message = f"images leak between splits: see quality/report.html and quality/pairs.csv in {where}."
    if on_leakage == "fail":
        raise LeakageError(f"{message} Remove the copies from one split, or pass -P on_leakage=warn to go on.")
    LOGGER.warning("%s", message)


def require_on_leakage(on_leakage: str) -> None:
    """Refuse an unknown ``on_leakage`` before any image is read."""
    if on_leakage not in ON_LEAKAGE_CHOICES:
        raise LineageError(f"on_leakage must be one of {', '.join(ON_LEAKAGE_CHOICES)}, got {on_leakage!r}.")


def report_html(report: QualityReport, files: dict[str, str]) -> str:
    """A page a person can read at a glance: counts, then each flagged pair's two pictures side by side."""
    metrics = "".join(f"<li>{html.escape(k)}: <b>{v}</b></li>" for k, v in report.metrics.items())
    shown = report.pairs.head(REPORT_PAIRS_MAX)
    paths = sorted(set(shown["path_a"]) | set(shown["path_b"])) if len(shown) else []
    # a file in many pairs is decoded once; JPEG decodes release the GIL
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        thumbnails = dict(zip(paths, pool.map(thumbnail_uri, [files[path] for path in paths])))
    rows = []
    for row in shown.itertuples():
        flags = ", ".join(f for f, on in (("LEAKAGE", row.leakage), ("LABEL CONFLICT", row.label_conflict)) if on)
        cells = "".join(
            f"<td><img src='{thumbnails[path]}'>"
            f"<br>{html.escape(path)}<br>split {html.escape(split)}"
            f"{'' if label is None or pd.isna(label) else ', label ' + html.escape(str(label))}</td>"
            for path, split, label in ((row.path_a, row.split_a, row.label_a), (row.path_b, row.split_b, row.label_b))
        )
        rows.append(f"<tr>{cells}<td>{html.escape(row.kind.replace('_', ' '))}<br>distance {row.distance}"
                    f"<br><b>{flags}</b></td></tr>")
    more = (f"<p>{len(report.pairs) - REPORT_PAIRS_MAX} more pairs in pairs.csv.</p>"
            if len(report.pairs) > REPORT_PAIRS_MAX else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Dataset quality: {report.status}</title>"
            "<style>body{font-family:sans-serif} td{padding:6px;vertical-align:top;text-align:center;"
            "border-bottom:1px solid #ccc} img{max-width:160px;max-height:160px}</style></head><body>"
            f"<h1>Dataset quality: {report.status}</h1><p>{report.images} images; near-duplicate threshold "
            f"{report.threshold} of 64 bits (perceptual hash).</p><ul>{metrics}</ul>"
            f"<table>{''.join(rows) or '<tr><td>No duplicate pairs.</td></tr>'}</table>{more}</body></html>\n")


def thumbnail_uri(file: str) -> str:
    with Image.open(file) as image:
        image.draft("RGB", (THUMBNAIL, THUMBNAIL))
        small = image.convert("RGB")
        small.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
