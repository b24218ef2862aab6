"""The image record cache: what the image pass learned about each file, so an unchanged file is not read again.

The same idea as git's index and dvc's state database: a re-scan of an unchanged folder costs one ``stat``
per file instead of reading every byte, and so does a new folder of hard links to files already read. Records
are keyed by (absolute path, size, mtime_ns, inode, ctime_ns), and found by inode under another name: as git's
index does, the ctime is in the key because tools that rewrite a file keep its size and
set its mtime back (``cp -p``, ``rsync -t``, unpacking an archive), while the kernel sets the ctime to the
time of any change, and nobody can set it back. A file changed in the same clock tick as the read that
cached it would keep even its ctime ("racy git"): records of files changed less than ``RACY_NS`` before the
read began are not stored (:func:`racy`). Perceptual
hashes are keyed by sha256 (they depend on the bytes alone), and a folder's last scan is kept whole (one
row read instead of a row per file, :mod:`image_lineage.data.folders`), with the image's local features (ORB
corners, about 9 KB an image: :mod:`image_lineage.data.keypoints`).

Stored in sqlite under ``$IMAGE_LINEAGE_CACHE_DIR`` (default ``~/.cache/image_lineage``; ``off``: no cache).
Like dvc-data's state, it answers "don't know" whenever in doubt: the file carries ``SCHEMA_VERSION`` in
sqlite's ``user_version``, and a file written by another layout (an older or newer version of this
project), or one sqlite cannot read, is rebuilt empty; an error while reading is a miss, an error while
writing skips the write. Never a crash, never a stale answer. Change any table's layout: bump the version.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

from image_lineage.core import config
from image_lineage.data.facts import ImageFacts
from image_lineage.data.perceptual import HASHES
from image_lineage.data.versioned_sqlite import build_fresh, stored_version

LOGGER = logging.getLogger(__name__)

StatKey = tuple  # (absolute path, size, mtime_ns, inode, ctime_ns)

# 1 (implicit, user_version 0): the tables before the layout was versioned; 2: without ctime_ns; 3: without
# the quarters' hashes and the keypoints; 4: a scan's options in its state, not in its result; 5: no index
# by inode; 6: no DVC md5s
SCHEMA_VERSION = 7
# Linux stamps files from a clock that advances once a tick (1 to 10 ms); 50 ms is a few ticks with margin.
RACY_NS = 50_000_000
TABLES = (
    "CREATE TABLE images (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, ctime_ns INTEGER,"
    " sha256 TEXT, width INTEGER, height INTEGER, format TEXT, checked TEXT)",
    "CREATE TABLE perceptual (sha256 TEXT PRIMARY KEY, hashes TEXT, keypoints BLOB)",
    "CREATE TABLE scans (folder TEXT PRIMARY KEY, state TEXT, result TEXT)",
    "CREATE INDEX images_by_inode ON images (inode)",  # the same file under another name (see _lookup)
    # the md5 DVC records for the bytes of a sha256 (image_lineage.data.dvc), per DVC hash name
    "CREATE TABLE dvc_md5 (sha256 TEXT, hash_name TEXT, md5 TEXT, PRIMARY KEY (sha256, hash_name))",
)
_current: set[Path] = set()  # cache files this process found at SCHEMA_VERSION (checked once per process)


class RecordCache:
    """One cache file; see the module docstring. Every method opens its own short connection, so threads
    and processes share the file safely (sqlite locks it)."""

    FILE = "image_records.sqlite"
    COLUMNS = "path, size, mtime_ns, inode, ctime_ns, sha256, width, height, format, checked"

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path not in _current:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.stored_version() != SCHEMA_VERSION:
                self.rebuild()
            _current.add(self.path)

    @staticmethod
    def folder() -> Path | None:
        """Where the project caches what it learned; None when the cache is off."""
        return config.cache_dir()

    @classmethod
    def default(cls) -> "RecordCache | None":
        folder = cls.folder()
        if folder is None:
            return None
        try:
            return cls(folder / cls.FILE)
        except (OSError, sqlite3.Error) as exc:  # a read-only home must not stop logging
            LOGGER.warning("image record cache disabled (%s): %s", folder, exc)
            return None

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def stored_version(self) -> int | None:
        """The file's schema version; None when there is no file or sqlite cannot read it."""
        return stored_version(self.path)

    def rebuild(self) -> None:
        """A new empty cache in place of whatever is there (:func:`image_lineage.data.versioned_sqlite.build_fresh`)."""
        if self.path.exists():
            LOGGER.info("image record cache %s was written by another layout (or is damaged): rebuilt empty", self.path)
        build_fresh(self.path, TABLES, SCHEMA_VERSION)

    def lookup(self, keys: list[StatKey], perceptual: bool = False) -> dict[StatKey, ImageFacts]:
        """{key: facts} for the keys whose stored size, mtime, inode and ctime still match (with their perceptual
        hashes when ``perceptual`` and they are known). Any doubt is a miss."""
        try:
            return self._lookup(keys, perceptual)
        except (sqlite3.Error, ValueError, TypeError) as exc:  # locked too long, damaged, a row of another form
            LOGGER.warning("image record cache %s unreadable (%s): reading the files instead", self.path, exc)
            return {}

    def _lookup(self, keys: list[StatKey], perceptual: bool) -> dict[StatKey, ImageFacts]:
        wanted = set(keys)
        found = {}
        columns = f"{self.COLUMNS}, perceptual.hashes, perceptual.keypoints" if perceptual else f"{self.COLUMNS}, NULL, NULL"
        join = "LEFT JOIN perceptual USING (sha256)" if perceptual else ""
        with contextlib.closing(self.connect()) as db:
            for where, values in self.selections([key[0] for key in keys]):
                for key, facts in self.rows(db, f"SELECT {columns} FROM images {join} WHERE {where}", values):
                    if key in wanted:
                        found[key] = facts
            # The same file under another name: a version folder made of hard links to the one before (cp -al,
            # rsync --link-dest, DVC's hardlink cache) shares each unchanged file's inode, size, mtime and
            # ctime, as dvc-data's state keys on them. Any change to the file changes its ctime for every name.
            by_inode: dict[int, list[StatKey]] = {}
            for key in wanted - found.keys():
                by_inode.setdefault(key[3], []).append(key)
            inodes = list(by_inode)
            for start in range(0, len(inodes), 500):
                chunk = inodes[start:start + 500]
                for key, facts in self.rows(db, f"SELECT {columns} FROM images {join} WHERE inode IN "
                                                f"({','.join('?' * len(chunk))})", chunk):
                    for other in by_inode[key[3]]:
                        if other[1:] == key[1:]:
                            found[other] = facts
        return found

    @staticmethod
    def rows(db: sqlite3.Connection, query: str, values: list):
        """(stat key, facts) of each row a query selects."""
        for *key, sha256, width, height, fmt, checked, hashes, corners in db.execute(query, values):
            phash = tuple(int(h, 16) for h in hashes.split(",")) if hashes else None
            if not (phash and len(phash) == HASHES and isinstance(corners, bytes)):
                phash = corners = None  # none, or another layout's: computed again
            yield tuple(key), ImageFacts(sha256, key[1], width, height, fmt, checked, phash, corners)

    @staticmethod
    def selections(paths: list[str]) -> list[tuple[str, list[str]]]:
        """WHERE clauses that select ``paths``: one range over the primary key when they share a folder
        (a version folder: one indexed scan instead of 40 IN lists at 20,000 files), else IN lists of 500
        (sqlite caps the bound parameters)."""
        folder = os.path.commonprefix([min(paths), max(paths)]).rpartition("/")[0] if paths else ""
        if folder.count("/") >= 2:
            return [("path > ? AND path < ?", [folder + "/", folder + "0"])]  # "0" follows "/" in the byte order
        return [(f"path IN ({','.join('?' * len(chunk))})", chunk) for chunk in (paths[i:i + 500] for i in range(0, len(paths), 500))]

    def scan_result(self, folder: str, state: str) -> str | None:
        """What :meth:`store_scan` kept for ``folder`` when its state (every file's stat key) was ``state``;
        None when the folder changed since, was never scanned, or the cache cannot say."""
        try:
            with contextlib.closing(self.connect()) as db:
                row = db.execute("SELECT result FROM scans WHERE folder = ? AND state = ?", (folder, state)).fetchone()
        except sqlite3.Error as exc:
            LOGGER.warning("image record cache %s unreadable (%s): scanning the folder", self.path, exc)
            return None
        return row[0] if row else None

    def store_scan(self, folder: str, state: str, result: str) -> None:
        self.write("INSERT OR REPLACE INTO scans VALUES (?, ?, ?)", [(folder, state, result)])

    def dvc_md5s(self, sha256s: set[str], hash_name: str) -> dict[str, str]:
        """{sha256: md5} of the bytes whose DVC md5 (``hash_name``: md5 or md5-dos2unix) is known; {} on any doubt."""
        wanted, found = sorted(sha256s), {}
        try:
            with contextlib.closing(self.connect()) as db:
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    found.update(db.execute(f"SELECT sha256, md5 FROM dvc_md5 WHERE hash_name = ? AND sha256 IN "
                                            f"({','.join('?' * len(chunk))})", [hash_name, *chunk]))
        except sqlite3.Error as exc:
            LOGGER.warning("image record cache %s unreadable (%s): reading the files for their md5", self.path, exc)
            return {}
        return found

    def store_dvc_md5s(self, rows: list[tuple[str, str, str]]) -> None:
        """(sha256, hash_name, md5) rows: md5s depend on the bytes alone, so no stat key is needed."""
        self.write("INSERT OR REPLACE INTO dvc_md5 VALUES (?, ?, ?)", rows)

    def store(self, entries: list[tuple[StatKey, ImageFacts]], read_started_ns: int) -> None:
        """Records read by a pass that began at ``read_started_ns`` (``time.time_ns()`` before the first
        stat); those of files changed just before are left out (see the module docstring)."""
        entries = [(key, facts) for key, facts in entries if not racy(key[4], read_started_ns)]
        rows = [(*key, f.sha256, f.width, f.height, f.format, f.checked) for key, f in entries]
        hashes = [(f.sha256, ",".join(f"{h:016x}" for h in f.phash), f.keypoints) for _, f in entries if f.phash]
        self.write(f"INSERT OR REPLACE INTO images ({self.COLUMNS}) VALUES ({','.join('?' * 10)})", rows,
                   ("INSERT OR REPLACE INTO perceptual VALUES (?, ?, ?)", hashes))

    def write(self, statement: str, rows: list, *more: tuple[str, list]) -> None:
        """Statements in one transaction; on any sqlite error (another process holding the lock too long, a
        damaged file) the write is skipped: the cache only ever saves work."""
        try:
            with contextlib.closing(self.connect()) as db, db:
                for sql, values in ((statement, rows), *more):
                    db.executemany(sql, values)
        except sqlite3.Error as exc:
            LOGGER.warning("could not update the image record cache %s: %s", self.path, exc)


def racy(ctime_ns: int, read_started_ns: int) -> bool:
    """Whether a file last changed at ``ctime_ns`` changed so shortly before a read that began at
    ``read_started_ns`` that a change after the read could leave its stat key as it was."""
    return ctime_ns > read_started_ns - RACY_NS
