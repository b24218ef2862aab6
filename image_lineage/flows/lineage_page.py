"""The lineage page of a registered model version: one self-contained HTML file, read in a browser without a server.

It walks the lineage top-down, each step a section the page's menu links to:

* the model version: its aliases, its run, the digests its tags name;
* the runs: the one that made it, and every run that logged, checked or trained on its datasets (the trace index,
  :mod:`image_lineage.tracking.trace_index`);
* each dataset version it was trained or evaluated on: content digest, images per class, the diff against the
  version before it (as the version's run recorded it), the leakage check's status and its flagged pairs with
  thumbnails, and a sample of the images of each class.

Pictures are embedded (JPEG thumbnails as ``data:`` URIs): read from the dataset's folder when it is still there
and the file's sha256 is the one logged, else from the samples the version's run stored; a picture found in
neither is named, not shown. Written by ``image-lineage lineage-page`` and logged by ``compare`` for the
versions of the models it compares.
"""

from __future__ import annotations

import html
import json
import logging
import posixpath
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_DIFF, TAG_DIGEST, TAG_QUALITY_STATUS
from image_lineage.data.packs import file_sha256
from image_lineage.quality.report import thumbnail_uri
from image_lineage.tracking.trace_index import TraceIndex

LOGGER = logging.getLogger(__name__)

SAMPLES_PER_CLASS = 4
PAIRS_SHOWN = 12
STYLE = ("body{font-family:sans-serif;margin:0;display:flex} nav{position:sticky;top:0;height:100vh;overflow:auto;"
         "min-width:14em;padding:1em;background:#f4f4f4} main{padding:1em 2em;max-width:70em} "
         "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top} "
         "img{max-width:120px;max-height:120px;margin:2px} .class{margin:.5em 0} code{font-size:90%}")


@dataclass
class DatasetSection:
    name: str
    context: str
    digest: str  # the full sha256 where the index or the run's tags know it, else the input's 32 digits
    folder: Path | None  # the dataset's local folder, when its source names one
    split: str = ""  # the input's split (its pictures answer for the pairs' images of that split)
    files: list[tuple[str, str, str]] = field(default_factory=list)  # (sha256, path, label)
    holder: tuple[str, str] | None = None  # (run id, manifest artifact)
    runs: list[tuple] = field(default_factory=list)
    status: str = ""
    diff: str = ""
    pairs: pd.DataFrame | None = None

    @property
    def anchor(self) -> str:
        return f"data-{self.digest[:12]}"


@dataclass
class LineagePageRequest:
    model: str
    version: str
    output: str | None = None  # default: lineage_<model>_v<version>.html
    index: str | None = None  # the trace index file (default: one per tracking server)


def write_lineage_page(request: LineagePageRequest) -> Path:
    """``image-lineage lineage-page``: the page, written."""
    path = Path(request.output or f"lineage_{safe_name(request.model)}_v{request.version}.html")
    path.write_text(lineage_page_html(request.model, str(request.version), request.index))
    print(f"lineage page of {request.model} version {request.version}: {path.resolve()}")
    return path


def lineage_page_html(model: str, version: str, index: str | None = None) -> str:
    client = mlflow.MlflowClient()
    try:
        model_version = client.get_model_version(model, version)
    except MlflowException as exc:
        raise LineageError(f"model {model!r} version {version}: not found ({exc.message}).") from None
    aliases = sorted(a for a, v in (client.get_registered_model(model).aliases or {}).items() if str(v) == str(version))
    run = client.get_run(model_version.run_id)
    trace_index = TraceIndex(index)
    trace_index.refresh()
    sections = [fill_section(section, trace_index, client, run.info.run_id)
                for section in dataset_sections(run, trace_index)]
    return render(model_version, aliases, run, sections)


def dataset_sections(run, trace_index: TraceIndex) -> list[DatasetSection]:
    """A section per dataset input of the model's run (one per digest)."""
    sections = {}
    for logged in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in logged.tags}
        split = tags.get("split") or tags.get("version") or ""
        digest = (run.data.tags.get(f"{TAG_DIGEST}.{split}") or trace_index.full_digest(logged.dataset.digest)
                  or logged.dataset.digest)
        source = json.loads(logged.dataset.source) if logged.dataset.source else {}
        folder = local_folder(source)
        sections.setdefault(digest, DatasetSection(logged.dataset.name, tags.get("mlflow.data.context", ""), digest, folder,
                                                   tags.get("split", "")))
    return list(sections.values())


def local_folder(source: dict) -> Path | None:
    """Where a dataset source's images are on this machine: a COCO split's images folder, else the folder it names
    (a ``file://`` URI decoded: ``my%20set`` is ``my set``)."""
    location = str(source.get("images_dir") or source.get("uri") or source.get("data_dir") or "")
    if location.startswith("file://"):
        location = url2pathname(urlparse(location).path)
    return Path(location) if location.startswith("/") else None


def fill_section(section: DatasetSection, trace_index: TraceIndex, client, model_run_id: str) -> DatasetSection:
    section.files = trace_index.version_files(section.digest)
    section.holder = trace_index.version_holder(section.digest)
    section.runs = trace_index.runs_of([section.digest])
    # the model's own run first: its check is the one that judged the data it trained on
    order = [model_run_id, *([section.holder[0]] if section.holder else []), *(row[1] for row in section.runs)]
    for run_id in dict.fromkeys(order):
        tags = client.get_run(run_id).data.tags
        section.diff = section.diff or tags.get(TAG_DIFF, "")
        if tags.get(TAG_QUALITY_STATUS) and not section.status:
            section.status = tags[TAG_QUALITY_STATUS]
            section.pairs = load_pairs(client, run_id)
    return section


def load_pairs(client, run_id: str) -> pd.DataFrame | None:
    if "quality/pairs.csv" not in {item.path for item in client.list_artifacts(run_id, "quality")}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_csv(client.download_artifacts(run_id, "quality/pairs.csv", tmp))


# ---------------------------------------------------------------- pictures


class Pictures:
    """Thumbnails of a version's images: from its folder when the file there still has the logged sha256, else
    from the samples its run stored."""

    def __init__(self, section: DatasetSection, client, tmp: Path):
        self.section, self.client, self.tmp = section, client, tmp
        self.sha256 = {path: sha256 for sha256, path, _ in section.files}

    def uri(self, path: str) -> str | None:
        """``path`` as the version names it, or as the leakage report does: with the split's folder in front
        (``train/cat/x.jpg``, ``train2017/x.jpg``)."""
        if path not in self.sha256 and "/" in path and path.split("/", 1)[1] in self.sha256:
            path = path.split("/", 1)[1]
        local = self.section.folder / path if self.section.folder else None
        if local is not None and local.is_file() and file_sha256(local) == self.sha256.get(path, ""):
            return thumbnail_uri(str(local))
        if self.section.holder is None:
            return None
        run_id, manifest = self.section.holder
        for stored in ("samples", "images"):  # a folder version's samples, a COCO split's images stored as files
            artifact = posixpath.join(posixpath.dirname(manifest), stored, path)
            try:
                return thumbnail_uri(self.client.download_artifacts(run_id, artifact, str(self.tmp)))
            except (MlflowException, OSError):
                continue
        return None


# ---------------------------------------------------------------- the page


def render(model_version, aliases: list[str], run, sections: list[DatasetSection]) -> str:
    client = mlflow.MlflowClient()
    title = f"{model_version.name} version {model_version.version}"
    menu = [("model", "Model version"), ("runs", "Runs")] + [(s.anchor, f"{s.name} {s.digest[:12]}") for s in sections]
    nav = "".join(f"<li><a href='#{anchor}'>{html.escape(text)}</a></li>" for anchor, text in menu)
    with tempfile.TemporaryDirectory(prefix="image_lineage_page_") as tmp:
        body = [model_html(model_version, aliases, run), runs_html(run, sections)]
        pictures = {id(s): Pictures(s, client, Path(tmp)) for s in sections}
        by_split = {s.split: pictures[id(s)] for s in sections if s.split}
        body += [section_html(s, pictures[id(s)], by_split) for s in sections]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Lineage: {html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><nav><b>Lineage</b><ul>{nav}</ul></nav><main>"
            f"<h1>Lineage of {html.escape(title)}</h1>{''.join(body)}</main></body></html>\n")


def model_html(model_version, aliases: list[str], run) -> str:
    digests = "".join(f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(v)}</code></td></tr>"
                      for k, v in sorted((model_version.tags or {}).items()) if k.startswith(TAG_DIGEST) and len(v) == 64)
    return (f"<section id='model'><h2>Model version</h2><table>"
            f"<tr><th>model</th><td>{html.escape(model_version.name)}</td></tr>"
            f"<tr><th>version</th><td>{html.escape(str(model_version.version))}</td></tr>"
            f"<tr><th>aliases</th><td>{html.escape(', '.join(aliases) or 'none')}</td></tr>"
            f"<tr><th>made by run</th><td>{html.escape(run.info.run_name or '')} <code>{run.info.run_id}</code></td></tr>"
            f"</table>{'<h3>Dataset digests it is tagged with</h3><table>' + digests + '</table>' if digests else ''}</section>")


def runs_html(run, sections: list[DatasetSection]) -> str:
    experiment = mlflow.MlflowClient().get_experiment(run.info.experiment_id).name
    rows = {(run.info.run_id, run.info.run_name or "", "made this model version", experiment)}
    for section in sections:
        for _, run_id, name, experiment, status, entry, split, context, role in section.runs:
            rows.add((run_id, name or "", f"{role} {section.name}".strip(), experiment))
    cells = "".join(f"<tr><td><code>{r}</code></td><td>{html.escape(n)}</td><td>{html.escape(e)}</td>"
                    f"<td>{html.escape(what)}</td></tr>" for r, n, what, e in sorted(rows, key=lambda row: row[2]))
    return (f"<section id='runs'><h2>Runs</h2><table><tr><th>run</th><th>name</th><th>experiment</th><th>what</th></tr>"
            f"{cells}</table></section>")


def section_html(section: DatasetSection, pictures: Pictures, by_split: dict[str, Pictures] | None = None) -> str:
    counts = Counter(label for _, _, label in section.files)
    head = (f"<section id='{section.anchor}'><h2>Dataset {html.escape(section.name)}</h2><table>"
            f"<tr><th>content digest</th><td><code>{section.digest}</code></td></tr>"
            f"<tr><th>context</th><td>{html.escape(section.context)}</td></tr>"
            f"<tr><th>images</th><td>{len(section.files) or 'not indexed (no manifest on the server)'}</td></tr>"
            f"<tr><th>per class</th><td>{html.escape(', '.join(f'{k or chr(8212)}: {v}' for k, v in sorted(counts.items())))}</td></tr>"
            f"<tr><th>diff against the version before</th><td>{html.escape(section.diff or 'not recorded')}</td></tr>"
            f"<tr><th>leakage check</th><td class='status'>{html.escape(section.status or 'not run')}</td></tr></table>")
    return head + pairs_html(section, pictures, by_split or {}) + samples_html(section, pictures, counts) + "</section>"


def pairs_html(section: DatasetSection, pictures: Pictures, by_split: dict[str, Pictures]) -> str:
    """The flagged pairs, each picture found among the images of its own split (``by_split``: the pictures of
    each split the model's run logged), so two splits' ``cat/x.jpg`` are not mistaken for each other."""
    if section.pairs is None or section.pairs.empty:
        return ""
    rows = []
    for pair in section.pairs.head(PAIRS_SHOWN).itertuples():
        cells = "".join(picture_html(by_split.get(str(split), pictures), path)
                        for path, split in ((pair.path_a, pair.split_a), (pair.path_b, pair.split_b)))
        flags = "LEAKAGE" if pair.leakage else ""
        rows.append(f"<tr>{cells}<td>{html.escape(str(pair.kind).replace('_', ' '))} <b>{flags}</b></td></tr>")
    more = f"<p>{len(section.pairs) - PAIRS_SHOWN} more in the run's quality/pairs.csv.</p>" if len(section.pairs) > PAIRS_SHOWN else ""
    return f"<h3>Flagged pairs ({len(section.pairs)})</h3><table class='pairs'>{''.join(rows)}</table>{more}"


def samples_html(section: DatasetSection, pictures: Pictures, counts: Counter) -> str:
    blocks = []
    for label in sorted(counts):
        paths = [path for _, path, lab in section.files if lab == label][:SAMPLES_PER_CLASS]
        blocks.append(f"<div class='class'><b>{html.escape(label or 'no label')}</b><br>"
                      f"{''.join(picture_html(pictures, path, cell=False) for path in paths)}</div>")
    return f"<h3>Sample images per class</h3>{''.join(blocks)}" if blocks else ""


def picture_html(pictures: Pictures, path: str, cell: bool = True) -> str:
    uri = pictures.uri(path)
    shown = (f"<img src='{uri}' alt='{html.escape(path)}' title='{html.escape(path)}'>" if uri
             else f"<span>{html.escape(path)} (not at hand)</span>")
    return f"<td>{shown}<br>{html.escape(path)}</td>" if cell else shown


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
