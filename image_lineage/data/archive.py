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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # tar archives end on a 10240-byte record, as tarfile writes them
CHUNK = 1 << 20
READ_THREADS = 4
READ_BATCH = 256  # files read ahead at a time
READ_AHEAD_MAX = 1 << 20  # larger files are streamed, not read ahead: at most 256 MB held


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


HEADER_TEMPLATE = member_header("", 0)  # every field but name, size and checksum is the same for each member


def fast_header(name: bytes, size: int) -> bytes:
    """``member_header`` for a name of at most 100 bytes, without building a ``TarInfo`` (50 us -> 3 us a
    member; ``test_archive`` checks both give the same bytes)."""
    header = bytearray(HEADER_TEMPLATE)
    header[0:100] = name.ljust(100, b"\0")
    header[124:136] = b"%011o\0" % size
    header[148:156] = b"        "  # the checksum is computed with its own field as spaces
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def header_for(name: str, size: int) -> bytes:
    encoded = name.encode("utf-8", "surrogateescape")
    return fast_header(encoded, size) if len(encoded) <= 100 and size < 8 ** 11 else member_header(name, size)


def read_file(path: str) -> bytes | None:
    """The file's bytes when it is small enough to hold while its batch waits (``READ_AHEAD_MAX``); None for
    a larger one, which is streamed when its turn comes (memory stays bounded whatever the images are)."""
    with open(path, "rb", buffering=0) as file:
        return file.read() if os.fstat(file.fileno()).st_size <= READ_AHEAD_MAX else None


def stream_file(path: str, emit) -> int:
    """A large file in ``CHUNK`` pieces: its size (declared in its header first), then its bytes."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        emit(None, size)
        left = size
        while left:
            chunk = file.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{path} shrank while it was archived (expected {size} bytes).")
            emit(chunk)
            left -= len(chunk)
    return size


def write_archive(members: Iterable[tuple[str, str | Path]], path: str | Path) -> str:
    """Write ``(name in the archive, file)`` pairs, sorted by name, as one uncompressed tar at ``path``;
    return its sha256 hex digest. Files are read ahead on a few threads (reads release the GIL) while
    the headers are written and the bytes hashed here."""
    ordered = sorted(((name, str(source)) for name, source in members), key=lambda member: member[0])
    digest = hashlib.sha256()
    written = 0
    with open(path, "wb", buffering=CHUNK) as out, ThreadPoolExecutor(READ_THREADS) as pool:
        def emit(data: bytes) -> None:
            nonlocal written
            out.write(data)
            digest.update(data)
            written += len(data)

        batches = [ordered[i:i + READ_BATCH] for i in range(0, len(ordered), READ_BATCH)]
        ahead = pool.map(read_file, [source for _, source in batches[0]]) if batches else iter(())
        for index, batch in enumerate(batches):
            contents = list(ahead)
            if index + 1 < len(batches):  # the next batch is read while this one is written
                ahead = pool.map(read_file, [source for _, source in batches[index + 1]])
            for (name, source), data in zip(batch, contents):
                if data is None:
                    size = stream_file(source, lambda chunk, size=None, name=name: emit(
                        header_for(name, size) if chunk is None else chunk))
                else:
                    size = len(data)
                    emit(header_for(name, size))
                    emit(data)
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
