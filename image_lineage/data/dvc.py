"""DVC's own version id of a folder, for a folder DVC tracks: the md5 ``dvc add`` records, computed as DVC does.

DVC names a folder version by the md5 of its ``.dir`` listing: every file under the folder (``.git/``,
``.hg/`` and ``.dvc/`` left out), each as ``{"md5": <md5 of its bytes>, "relpath": <'/'-separated path>}``,
sorted by path, serialized with ``json.dumps(..., sort_keys=True)``; the id is that text's md5 with ``.dir``
appended (dvc-data's ``Tree.as_bytes`` and ``Tree.digest``). Outputs written by DVC 2 (no ``hash:`` field)
hash each 1 MiB chunk of a file that looks like text with its CRLF line ends turned into LF
(``md5-dos2unix``); DVC 3's (``hash: md5``) hash the bytes as they are. Both are computed here.

A folder is DVC-tracked when a ``<folder>.dvc`` file beside it, or a ``dvc.lock`` in it or a folder above it
(up to the repository's root), names it as an output. The image pass already knows each image's sha256, and
md5s are cached by sha256 (:meth:`image_lineage.data.cache.RecordCache.dvc_md5s`), so only bytes never seen
before are read again, and a re-log reads nothing; the other files DVC counts (a README, a ``.DS_Store``) are
read each time. A ``.dvcignore`` on the way changes which files DVC counts: this module does not apply its
patterns and answers "unknown" instead of a wrong id. Nothing here imports ``dvc``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from image_lineage.data.cache import RecordCache

LOGGER = logging.getLogger(__name__)

SKIPPED_FOLDERS = {".git", ".hg", ".dvc"}  # DvcIgnoreFilter's default patterns
CHUNK = 2**20  # dvc-data hashes in chunks of 1 MiB, each judged text or binary on its own (md5-dos2unix)
TEXT_CHARS = bytes(range(32, 127)) + b"\n\r\t\f\b"
LEGACY_HASH = "md5-dos2unix"  # an output without a hash: field was written by DVC 2
THREADS = 8  # hashlib releases the GIL on large buffers: reads and md5s overlap


@dataclass(frozen=True)
class DvcOutput:
    """A folder as DVC recorded it: in which file, under which id."""

    tracked_by: Path  # the .dvc file or dvc.lock
    md5: str  # "<32 hex>.dir"
    hash_name: str  # "md5" (DVC 3) or "md5-dos2unix" (DVC 2)
    nfiles: int | None = None


@dataclass(frozen=True)
class DvcStatus:
    """What DVC recorded for a folder, and what the folder holds now."""

    recorded: DvcOutput
    md5: str | None  # the folder's id now, computed as DVC does; None when it cannot be told (why says why)
    nfiles: int
    why: str = ""

    @property
    def matches(self) -> str:
        """``true``, ``false`` or ``unknown``."""
        return "unknown" if self.md5 is None else str(self.md5 == self.recorded.md5).lower()


# ---------------------------------------------------------------- which file tracks a folder


def find_output(folder: str | Path) -> DvcOutput | None:
    """The DVC output that is ``folder``: from ``<folder>.dvc`` beside it, else from a ``dvc.lock`` in it or
    above it (up to the DVC repository's root, the folder holding ``.dvc/``); None when DVC does not track it.
    A tracking file that cannot be read is logged and passed over."""
    folder = Path(os.path.abspath(folder))
    beside = folder.with_name(folder.name + ".dvc")
    candidates = [beside] if beside.is_file() else []
    for parent in [folder, *folder.parents]:
        if (parent / "dvc.lock").is_file():
            candidates.append(parent / "dvc.lock")
        if (parent / ".dvc").is_dir() or (parent / ".git").exists():
            break
    for tracking in candidates:
        found = output_in(tracking, folder)
        if found is not None:
            return found
    return None


def output_in(tracking: Path, folder: Path) -> DvcOutput | None:
    """The output of ``tracking`` (a ``.dvc`` file or a ``dvc.lock``) whose path is ``folder``."""
    try:
        content = yaml.safe_load(tracking.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        LOGGER.warning("DVC file %s unreadable, passed over: %s", tracking, exc)
        return None
    if tracking.name == "dvc.lock":
        stages = content.get("stages") or {}
        outputs = [out for stage in stages.values() if isinstance(stage, dict) for out in stage.get("outs") or []]
    else:
        outputs = content.get("outs") or []
    for out in outputs:
        if not (isinstance(out, dict) and isinstance(out.get("path"), str) and str(out.get("md5", "")).endswith(".dir")):
            continue
        if Path(os.path.normpath(tracking.parent / out["path"])) == folder:
            return DvcOutput(tracking, out["md5"], out.get("hash") or LEGACY_HASH, out.get("nfiles"))
    return None


# ---------------------------------------------------------------- the folder's id now


def folder_status(folder: str | Path, sha256_of: Callable[[], dict[str, str]],
                  cache: RecordCache | None = None) -> DvcStatus | None:
    """The DVC status of ``folder`` (None when DVC does not track it). ``sha256_of`` makes {relpath: sha256} of the
    files the image pass read (the manifest), whose md5s the cache may know: called only for a tracked folder, so
    an untracked one costs its few stats and nothing more (100,000 records make a dict in ~20 ms)."""
    recorded = find_output(folder)
    if recorded is None:
        return None
    folder = Path(folder)
    files = walk(folder)
    ignore = dvcignore_on_the_way(folder, recorded.tracked_by.parent, files)
    if ignore is not None:
        return DvcStatus(recorded, None, len(files), f"{ignore} changes which files DVC counts; its patterns are not applied here")
    md5s = file_md5s(folder, files, sha256_of(), recorded.hash_name, cache)
    return DvcStatus(recorded, dir_md5(md5s), len(files))


def dir_md5(md5s: dict[str, str]) -> str:
    """The id of a folder whose files have these md5s ({relpath: md5}): dvc-data's ``Tree.digest``."""
    listing = [{"md5": md5s[relpath], "relpath": relpath} for relpath in sorted(md5s)]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def walk(folder: Path) -> list[str]:
    """Every file under ``folder`` as DVC lists it ('/'-separated relative paths; links to files count as files)."""
    found = []
    for parent, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if name not in SKIPPED_FOLDERS]
        relative = os.path.relpath(parent, folder)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        found.extend(prefix + name for name in names)
    return found


def dvcignore_on_the_way(folder: Path, root: Path, files: list[str]) -> Path | None:
    """A ``.dvcignore`` with patterns in ``folder`` or under it (among ``files``, its listing), or between it and
    the DVC repository's root (the folder above ``root`` that holds ``.dvc/``); None when there is none."""
    places = [folder / f for f in files if f == ".dvcignore" or f.endswith("/.dvcignore")]
    top = next((parent for parent in [root, *root.parents] if (parent / ".dvc").is_dir()), root)  # the repository
    places += [parent / ".dvcignore" for parent in folder.parents if parent.is_relative_to(top)]
    for place in places:
        try:
            if any(line.strip() and not line.startswith("#") for line in place.read_text().splitlines()):
                return place
        except OSError:
            continue
    return None


def file_md5s(folder: Path, files: list[str], sha256_of: dict[str, str], hash_name: str,
              cache: RecordCache | None) -> dict[str, str]:
    """{relpath: md5} of ``files``: from the cache by sha256 where the image pass knows the bytes, else read."""
    known = cache.dvc_md5s({sha256_of[f] for f in files if f in sha256_of}, hash_name) if cache else {}
    md5s = {f: known[sha256_of[f]] for f in files if sha256_of.get(f) in known}
    missing = [f for f in files if f not in md5s]
    with ThreadPoolExecutor(THREADS) as pool:
        md5s.update(zip(missing, pool.map(lambda f: file_md5(folder / f, hash_name), missing)))
    if cache:
        cache.store_dvc_md5s([(sha256_of[f], hash_name, md5s[f]) for f in missing if f in sha256_of])
    return md5s


def file_md5(path: Path, hash_name: str = "md5") -> str:
    """The md5 DVC records for one file (dvc-data's ``file_md5``)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            if hash_name == LEGACY_HASH and looks_like_text(chunk[:512]):
                chunk = chunk.replace(b"\r\n", b"\n")
            digest.update(chunk)
    return digest.hexdigest()


def looks_like_text(block: bytes) -> bool:
    """dvc-data's ``istextblock``: no NUL byte, and at most 30 % of the bytes outside printable ASCII."""
    if not block:
        return True
    if b"\x00" in block:
        return False
    return len(block.translate(None, TEXT_CHARS)) / len(block) <= 0.30
