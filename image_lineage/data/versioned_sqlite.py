"""A sqlite file that carries the version of its layout in sqlite's ``user_version``, and is rebuilt, never read,
when it holds another layout or cannot be read: the image record cache (:mod:`image_lineage.data.cache`) and the
trace index (:mod:`image_lineage.tracking.trace_index`)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterable


def stored_version(path: Path, timeout: float = 30) -> int | None:
    """The file's layout version; None when there is no file or sqlite cannot read it (not a database, damaged)."""
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=timeout)) as db:
            return db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError:
        return None


def build_fresh(path: Path, statements: Iterable[str | tuple[str, tuple]], version: int) -> None:
    """A new file of layout ``version`` in place of whatever is at ``path``: its tables (and first rows) made by
    ``statements`` (SQL, or (SQL, parameters)), beside it, then renamed over it, so a process that reads
    meanwhile sees the old file or the new one, never half of one."""
    fresh = path.with_name(f"{path.name}.{os.getpid()}.new")
    fresh.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(fresh)) as db, db:
        for statement in statements:
            db.execute(*((statement,) if isinstance(statement, str) else statement))
        db.execute(f"PRAGMA user_version = {version}")
    Path(f"{path}-journal").unlink(missing_ok=True)  # a journal of the old file must not roll back the new
    os.replace(fresh, path)
