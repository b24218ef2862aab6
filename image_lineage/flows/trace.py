"""``trace``: from an image to every dataset version that holds its bytes, every run that logged, checked or trained
on those versions, and every registered model version those runs made, with its aliases.

What can be traced: an image file (its bytes are hashed), a folder (each of its image files: "which of these were
ever logged, and where?"), a sha256 or a unique prefix of one (8 hex digits or more), or a path inside a logged
version (``cat/cat_01.jpg``, or a longer path ending in one). The answers come from the trace index
(:mod:`image_lineage.tracking.trace_index`), brought up to date with the tracking server first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from image_lineage.core.errors import LineageError
from image_lineage.core.names import IMAGE_EXTENSIONS
from image_lineage.data.read import read_images
from image_lineage.tracking.trace_index import TraceIndex

LOGGER = logging.getLogger(__name__)

HEX = re.compile(r"^[0-9a-f]{8,64}$")
IMAGE_COLUMNS = ["File", "sha256", "Version digest", "Split", "Path in version", "Label"]
RUN_COLUMNS = ["Version digest", "Run ID", "Run name", "Experiment", "Status", "Entry point", "Split", "Context", "Role"]
MODEL_COLUMNS = ["Model", "Version", "Aliases", "Run ID"]


@dataclass
class Trace:
    """What ``trace`` found: ``images`` (where each traced image is, per version), ``runs`` (the runs of those
    versions), ``models`` (the model versions of those runs), and ``files`` (for a folder: each file, logged or not)."""

    images: pd.DataFrame
    runs: pd.DataFrame
    models: pd.DataFrame
    files: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["File", "sha256", "Versions"]))

    @property
    def versions(self) -> list[str]:
        return sorted(set(self.images["Version digest"]))


def trace(what: str | os.PathLike, index: str | os.PathLike | None = None, refresh: bool = True) -> Trace:
    """Trace ``what`` (see the module docstring) through the index at ``index`` (default: one per tracking
    server under the cache folder), refreshed from the tracking server first unless ``refresh`` is False."""
    trace_index = TraceIndex(index)
    if refresh:
        trace_index.refresh()
    wanted, files = images_to_trace(str(what), trace_index)
    found = trace_index.files_of(sorted(set(wanted))) if wanted else []
    if not wanted and not files:
        found = trace_index.files_at(path_suffixes(str(what)))
        if not found:
            raise LineageError(f"{what}: no such file or folder, no sha256 (8 to 64 hex digits), and no path of a "
                               f"logged version. Give an image file, a folder, a sha256, or a path such as cat/cat_01.jpg.")
    runs = trace_index.runs_of(sorted({row[1] for row in found}))
    live = {row[0] for row in runs}
    found = [row for row in found if row[1] in live]  # a version no live run names has dropped out
    models = trace_index.models_of(sorted({row[1] for row in runs}), sorted(live))
    splits: dict[str, set] = {}  # what the runs call each version: train, validation, v2, ...
    for row in runs:
        splits.setdefault(row[0], set()).update(filter(None, row[6].split(",")))
    return Trace(images_table(found, wanted, splits), pd.DataFrame(runs, columns=RUN_COLUMNS),
                 pd.DataFrame(models, columns=MODEL_COLUMNS), files_table(files, found))


def images_to_trace(what: str, trace_index: TraceIndex) -> tuple[dict[str, str], dict[str, str]]:
    """({sha256: file or the text given}, {file: sha256} for a folder) of what to trace."""
    path = Path(what)
    if path.is_file():
        return {hash_files([str(path)])[str(path)]: str(path)}, {}
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise LineageError(f"{what}: a folder with no image files to trace.")
        hashes = hash_files(files)
        return {sha256: file for file, sha256 in hashes.items()}, hashes
    text = what.strip().lower()
    if HEX.match(text):
        matches = [text] if len(text) == 64 else trace_index.sha256s_starting(text)
        if len(matches) > 1:
            raise LineageError(f"{what} is the start of {len(matches)}{'+' if len(matches) == 20 else ''} logged "
                               f"sha256s ({', '.join(m[:16] for m in matches[:3])}, ...): give more digits.")
        return {sha256: what for sha256 in matches}, {}
    return {}, {}


def hash_files(files: list[str]) -> dict[str, str]:
    """{file: sha256}, through the image pass (an unchanged file is answered from the record cache); a file the
    pass does not take for an image (damaged, or not one at all) is hashed as it is: it may still be in a version."""
    facts = read_images([os.path.abspath(f) for f in files], check="none")
    return {file: f.sha256 if not isinstance(f, str) else hashlib.sha256(Path(file).read_bytes()).hexdigest()
            for file, f in zip(files, facts)}


def path_suffixes(text: str) -> list[str]:
    """``data/v2/cat/cat_01.jpg`` -> every path it could name inside a version, longest first."""
    parts = [part for part in text.replace(os.sep, "/").split("/") if part not in ("", ".")]
    return ["/".join(parts[i:]) for i in range(len(parts))]


def images_table(found: list[tuple], wanted: dict[str, str], splits: dict[str, set]) -> pd.DataFrame:
    rows = [(wanted.get(sha256, ""), sha256, digest, ",".join(sorted(splits.get(digest, ()))), path, label)
            for sha256, digest, path, label in found]
    return pd.DataFrame(sorted(rows), columns=IMAGE_COLUMNS)


def files_table(files: dict[str, str], found: list[tuple]) -> pd.DataFrame:
    versions: dict[str, set] = {}
    for sha256, digest, _, _ in found:
        versions.setdefault(sha256, set()).add(digest)
    return pd.DataFrame([(file, sha256, len(versions.get(sha256, ()))) for file, sha256 in sorted(files.items())],
                        columns=["File", "sha256", "Versions"])


@dataclass
class TraceRequest:
    what: str
    index: str | None = None  # the trace index file (default: one per tracking server under the cache folder)
    refresh: bool = True


def run_trace(request: TraceRequest) -> Trace:
    """``image-lineage trace``: the tables, printed."""
    found = trace(request.what, request.index, request.refresh)
    if len(found.files):
        logged = int((found.files["Versions"] > 0).sum())
        print(f"{logged} of {len(found.files)} files in {request.what} are in logged versions\n")
        print(shortened(found.files).to_markdown(index=False), "\n")
    if found.images.empty:
        print(f"{request.what}: in no logged dataset version")
        return found
    for title, table in (("dataset versions holding it", found.images), ("runs of those versions", found.runs),
                         ("registered model versions from those runs", found.models)):
        print(f"{title} ({len(table)}):")
        print(shortened(table).to_markdown(index=False) if len(table) else "(none)", "\n")
    return found


def shortened(table: pd.DataFrame) -> pd.DataFrame:
    """Digests as tables print them (12 hex digits: any command of the project takes them back)."""
    table = table.copy()
    for column in ("sha256", "Version digest"):
        if column in table:
            table[column] = table[column].str[:12]
    return table
