"""Deterministic tar archives: the same files give the same bytes, on any day and any machine.

``tarfile.add`` records each file's owner, permissions and fractional mtime; the fraction alone costs a
~1 KB PAX header per member (14% of an archive of 12 KB photos, and most of ``addfile``'s time). Here each
member is a plain ustar header with fixed metadata (mtime 0, uid/gid 0, no owner names, mode 0644), in
sorted name order, followed by the file's bytes read straight from the dataset folder (no staging copy).
A PAX header is written only where a name needs one (longer than ustar's 155 + 100 bytes). The archive's sha256
is computed while writing, so a run can record it and a download can check it.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import Iterable

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # tar archives end on a 10240-byte record, as tarfile writes them
CHUNK = 1 << 20


def member_header(name: str, size: int) -> bytes:
    """The header of a regular file with fixed metadata (``tarfile`` builds it: the format stays exact)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    try:
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    except ValueError:  # a name ustar cannot hold (its 155 + 100 byte split): one PAX header says it
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def write_archive(members: Iterable[tuple[str, str | Path]], path: str | Path) -> str:
    """Write ``(name in the archive, file)`` pairs, sorted by name, as one uncompressed tar at ``path``;
    return its sha256 hex digest. A file that changes size while it is read is an error naming it."""
    digest = hashlib.sha256()
    written = 0
    with open(path, "wb") as out:
        def emit(data: bytes) -> None:
            nonlocal written
            out.write(data)
            digest.update(data)
            written += len(data)

        for name, source in sorted(members, key=lambda member: member[0]):
            with open(source, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                emit(member_header(name, size))
                left = size
                while left:
                    chunk = file.read(min(CHUNK, left))
                    if not chunk:
                        raise OSError(f"{source} shrank while it was archived (expected {size} bytes).")
                    emit(chunk)
                    left -= len(chunk)
            emit(b"\0" * (-size % BLOCK))
        emit(b"\0" * (2 * BLOCK))
        emit(b"\0" * (-written % RECORD))
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
