"""Packs: files stored by content, each unique file once, many files to one object (as git packfiles do).

A pack is the bytes of its files laid end to end, in sha256 order, nothing between them; its index lists each
file's sha256, offset and size. The same files give the same pack, byte for byte, on any machine. A tar would
add ~770 bytes of header and padding to each file (4 % of an 18 KB photo); the index carries what a header
would (the names and labels live in the version's manifest, since one file can have many names).

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

INDEX_HEADER = "image-lineage-pack 1"
CHUNK = 1 << 20
WRITE_THREADS = 4
WRITE_CHUNK = 256  # files a task when a pack is read back


class PackEntry(NamedTuple):  # a NamedTuple: an index of 100,000 files is parsed whenever a store is opened
    sha256: str
    offset: int
    size: int


@dataclass(frozen=True)
class PackIndex:
    sha256: str  # of the pack's bytes
    size: int
    entries: tuple[PackEntry, ...]

    def to_text(self) -> str:
        lines = [f"{INDEX_HEADER} {self.sha256} {self.size}"]
        lines += [f"{e.sha256} {e.offset} {e.size}" for e in self.entries]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str = "pack index") -> "PackIndex":
        lines = text.splitlines()
        head = lines[0].split() if lines else []
        if len(head) != 4 or " ".join(head[:2]) != INDEX_HEADER:
            raise LineageError(f"{source}: not a pack index of this format ({INDEX_HEADER!r} expected first).")
        try:
            entries = tuple(PackEntry(sha, int(offset), int(size))
                            for sha, offset, size in (line.split() for line in lines[1:]))
        except ValueError as exc:
            raise LineageError(f"{source}: a damaged line ({exc}); delete it to fetch it again.") from exc
        return cls(head[2], int(head[3]), entries)


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


def read_files(pack: BinaryIO, wanted: Iterable[tuple[PackEntry, list[Path]]], pack_name: str) -> int:
    """Copy each wanted entry of an open pack to its destination paths, checking its sha256 first (a file
    that does not match is refused, naming its first destination and the pack). Returns the bytes read.

    Creating 100,000 small files is what costs here (21 s one by one, against 1 s to copy the pack whole):
    the folders are made once, and the files on a few threads, since reads, hashing and writes release the GIL."""
    jobs = sorted(wanted, key=lambda item: item[0].offset)
    for folder in sorted({destination.parent for _, destinations in jobs for destination in destinations}):
        folder.mkdir(parents=True, exist_ok=True)
    descriptor = pack.fileno()

    def copy(chunk: list[tuple[PackEntry, list[Path]]]) -> int:
        total = 0
        for entry, destinations in chunk:
            data = os.pread(descriptor, entry.size, entry.offset)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise LineageError(f"{destinations[0]}: the stored bytes in pack {pack_name} do not match its "
                                   f"sha256 {entry.sha256[:12]}... (the pack is damaged).")
            for destination in destinations:
                with open(destination, "wb") as out:
                    out.write(data)
            total += entry.size
        return total

    chunks = [jobs[i:i + WRITE_CHUNK] for i in range(0, len(jobs), WRITE_CHUNK)]
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        return sum(pool.map(copy, chunks))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
