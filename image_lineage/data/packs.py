"""Packs: files stored by content, each unique file once, many files to one object (as git packfiles do).

A pack is the bytes of its files laid end to end, in sha256 order, nothing between them; its index lists each
file's key and size, in that order (offsets are the running sum of sizes). The same files give the same pack, byte
for byte, on any machine. A tar would add ~770 bytes of header and padding to each file (4 % of an 18 KB photo);
the index carries what a header would (the names and labels live in the version's manifest, since one file can
have many names).

A file's key is the first 128 bits of its sha256 (``KEY_HEX`` hex digits): the index only answers "is this file
stored, and where", and 128 bits is as wide as DVC's md5 file names, with no known way to make two files share a
sha256 prefix; the whole sha256 is in each version's manifest, and every read checks the bytes against it. The
full sha256 in the index (format 1, still read) cost 4.5 MB gzipped at 100,000 photos, the same 64 hex digits
the manifest already holds; format 2 is 2.2 MB.

Writing checks each file against the sha256 the image pass recorded: a file changed since it was read is
refused, so a pack never holds bytes under another file's name. Reading checks each file again.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, NamedTuple

from image_lineage.core.errors import LineageError
from image_lineage.data.locations import read_in_order

INDEX_FORMAT = "image-lineage-pack"
INDEX_VERSION = 2  # 1: "<sha256> <offset> <size>" lines, still read
KEY_HEX = 32  # a file's key in a format-2 index: the first 32 hex digits of its sha256
CHUNK = 1 << 20
WRITE_THREADS = 4
WRITE_CHUNK = 256  # files a task when a pack is read back


class PackEntry(NamedTuple):  # a NamedTuple: an index of 100,000 files is parsed whenever a store is opened
    sha256: str  # read from a format-2 index, only its key (the first KEY_HEX digits): see file_key
    offset: int
    size: int


@dataclass(frozen=True)
class PackIndex:
    sha256: str  # of the pack's bytes
    size: int
    entries: tuple[PackEntry, ...]

    def to_text(self) -> str:
        lines = [f"{INDEX_FORMAT} {INDEX_VERSION} {self.sha256} {self.size}"]
        lines += [f"{file_key(e.sha256)} {e.size}" for e in self.entries]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str = "pack index") -> "PackIndex":
        lines = text.splitlines()
        head = lines[0].split() if lines else []
        if len(head) != 4 or head[0] != INDEX_FORMAT or head[1] not in ("1", "2"):
            raise LineageError(f"{source}: not a pack index of a format this version reads "
                               f"({INDEX_FORMAT!r} {INDEX_VERSION} or older expected first); upgrade image-lineage.")
        try:
            if head[1] == "1":
                entries = tuple(PackEntry(sha, int(offset), int(size))
                                for sha, offset, size in (line.split() for line in lines[1:]))
            else:
                entries, offset = [], 0
                for key, size in (line.split() for line in lines[1:]):
                    entries.append(PackEntry(key, offset, int(size)))
                    offset += int(size)
                entries = tuple(entries)
        except ValueError as exc:
            raise LineageError(f"{source}: a damaged line ({exc}); delete it to fetch it again.") from exc
        return cls(head[2], int(head[3]), entries)


def file_key(sha256: str) -> str:
    """A file's key in the store (see the module's docstring): what pack indexes are looked up by."""
    return sha256[:KEY_HEX]


def write_pack(files: Iterable[tuple[str, str | Path]], path: str | Path) -> PackIndex:
    """Write the unique files of ``(sha256, file)`` pairs into one pack at ``path``; return its index.

    Each file is hashed again as it is copied; one whose bytes no longer match its sha256 (changed since the
    image pass read it) stops the pack, naming the file."""
    unique = dict(sorted(files, key=lambda item: item[0]))  # one copy of each sha256, in sha256 order
    pack_digest, entries, offset = hashlib.sha256(), [], 0
    with open(path, "wb", buffering=CHUNK) as out:
        # a file, or an object of a streamed prefix (image_lineage.data.locations), read in order
        for (sha256, source), data in zip(unique.items(), read_in_order(list(unique.values()))):
            if hashlib.sha256(data).hexdigest() != sha256:
                raise LineageError(f"{source} changed while it was stored (its sha256 is no longer {sha256[:12]}...): "
                                   f"log the version again.")
            out.write(data)
            pack_digest.update(data)
            entries.append(PackEntry(sha256, offset, len(data)))
            offset += len(data)
    return PackIndex(pack_digest.hexdigest(), offset, tuple(entries))


def read_files(pack: BinaryIO, wanted: Iterable[tuple[PackEntry, list[str | Path]]], pack_name: str) -> int:
    """Copy each wanted entry of an open pack to its destination paths, checking its sha256 first (a file
    that does not match is refused, naming its first destination and the pack). Returns the bytes read.

    Creating 100,000 small files is what costs here (21 s one by one, against 1 s to copy the pack whole):
    the folders are made once, and the files on a few threads, since reads, hashing and writes release the GIL."""
    jobs = sorted(wanted, key=lambda item: item[0].offset)
    for folder in sorted({os.path.dirname(destination) for _, destinations in jobs for destination in destinations}):
        os.makedirs(folder or ".", exist_ok=True)
    descriptor = pack.fileno()

    def copy(chunk: list[tuple[PackEntry, list[str | Path]]]) -> int:
        total = 0
        for entry, destinations in chunk:
            data = os.pread(descriptor, entry.size, entry.offset)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise LineageError(f"{destinations[0]}: the stored bytes in pack {pack_name} do not match its "
                                   f"sha256 {entry.sha256[:12]}... (the pack is damaged).")
            for destination in destinations:
                write_new_file(destination, data)
            total += entry.size
        return total

    chunks = [jobs[i:i + WRITE_CHUNK] for i in range(0, len(jobs), WRITE_CHUNK)]
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        return sum(pool.map(copy, chunks))


def write_new_file(path: str | Path, data: bytes) -> None:
    """``data`` as the file at ``path``, with two system calls and no Python file object (which costs more than
    the write of a small photo)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
    finally:
        os.close(descriptor)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
