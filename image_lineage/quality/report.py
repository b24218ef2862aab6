"""The leakage check's report a person reads: counts, then each flagged pair's two pictures side by side."""

from __future__ import annotations

import base64
import html
import io
import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from PIL import ImageOps

from image_lineage.data.locations import open_image
from image_lineage.quality.pairs import QualityReport

THUMBNAIL = 160
REPORT_PAIRS_MAX = 500  # thumbnails in the HTML report; pairs.csv lists every pair


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
        how = f" ({html.escape(row.transform)})" if row.transform else ""
        rows.append(f"<tr>{cells}<td>{html.escape(row.kind.replace('_', ' '))}{how}<br>distance {row.distance}"
                    f"<br><b>{flags}</b></td></tr>")
    more = (f"<p>{len(report.pairs) - REPORT_PAIRS_MAX} more pairs in pairs.csv.</p>"
            if len(report.pairs) > REPORT_PAIRS_MAX else "")
    more += set_aside_html(report.set_aside)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Dataset quality: {report.status}</title>"
            "<style>body{font-family:sans-serif} td{padding:6px;vertical-align:top;text-align:center;"
            "border-bottom:1px solid #ccc} img{max-width:160px;max-height:160px}</style></head><body>"
            f"<h1>Dataset quality: {report.status}</h1><p>{report.images} images; near-duplicate threshold "
            f"{report.threshold} of 64 bits (perceptual hash).</p><ul>{metrics}</ul>"
            f"<table>{''.join(rows) or '<tr><td>No duplicate pairs.</td></tr>'}</table>{more}</body></html>\n")


def set_aside_html(paths: list[str], listed: int = 100) -> str:
    """The images compared by their bytes only, and why."""
    if not paths:
        return ""
    names = "".join(f"<li>{html.escape(path)}</li>" for path in paths[:listed])
    rest = f"<li>and {len(paths) - listed} more</li>" if len(paths) > listed else ""
    return (f"<h2>Set aside: {len(paths)} image(s) compared by their bytes only</h2><p>A perceptual hash says "
            "nothing about a picture of one colour or one smaller than 32 pixels on a side: these were checked "
            f"for exact copies only.</p><ul>{names}{rest}</ul>")


def thumbnail_uri(file: str) -> str:
    with open_image(file) as image:
        image.draft("RGB", (THUMBNAIL, THUMBNAIL))
        small = ImageOps.exif_transpose(image).convert("RGB")  # upright, as shown
        small.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
