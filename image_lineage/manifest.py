"""Manifests of image-folder versions, their content digest, and diffs between versions.

A version folder holds one sub-folder per class (the label comes from the parent folder, as in the
Hugging Face ``imagefolder`` builder)::

    image_dataset/v2/cat/cat_01.jpg
    image_dataset/v2/dog/dog_01.jpg

The digest is the sha256 of the canonical manifest: one ``path<TAB>label<TAB>sha256`` line per image,
sorted by path. It depends on content and placement only, so a copy, another file order or new mtimes
give the same digest, while one flipped byte, a file moved to another class or an added file change it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

LOGGER = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
# A class name becomes an artifact folder (samples/<class>/) and a metric key (class_<name>_count).
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ON_BAD_IMAGE_CHOICES = ("fail", "skip")
# Reading and sha256 release the GIL, the header parse does not: a few workers on chunks of files
# beat one task per file (thousands of tiny tasks spend their time on the pool's locks).
HASH_WORKERS = os.cpu_count() or 2
HASH_CHUNK = 64


class DatasetError(ValueError):
    """Input that cannot be logged; the message names the file or folder and what to do."""


@dataclass(frozen=True)
class ImageRecord:
    path: str  # relative to the version folder, '/'-separated: "cat/cat_01.jpg"
    label: str
    size: int
    sha256: str
    width: int
    height: int


@dataclass
class Manifest:
    version_dir: str
    records: list[ImageRecord]
    classes: list[str]  # every class folder, empty ones included, sorted
    ignored: list[dict] = field(default_factory=list)  # {"path", "reason"}: non-images, hidden, bad
    digest: str = ""

    def class_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.classes}
        for record in self.records:
            counts[record.label] += 1
        return counts

    def non_empty_classes(self) -> list[str]:
        return [name for name, count in self.class_counts().items() if count]

    def to_json(self) -> str:
        return json.dumps(
            {
                "digest": self.digest,
                "num_images": len(self.records),
                "classes": self.classes,
                "images": [asdict(r) for r in self.records],
                "ignored": self.ignored,
            },
            indent=1,
        )


def list_versions(data_dir: str | Path) -> list[str]:
    """Version folders under ``data_dir`` in natural order (v2 before v10)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(
            f"data_dir {str(root)!r} does not exist or is not a folder: pass -P data_dir=<folder "
            f"holding version folders such as v1/ and v2/>."
        )
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(names, key=natural_key)


def natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def resolve_version_dir(data_dir: str | Path, version: str) -> Path:
    versions = list_versions(data_dir)
    if version not in versions:
        found = ", ".join(versions) or "none"
        raise DatasetError(
            f"version {version!r} not found in data_dir {str(data_dir)!r}; versions found: {found}."
        )
    return Path(data_dir) / version


def previous_version(data_dir: str | Path, version: str) -> str | None:
    """The version folder just before ``version`` in natural order (v1 for v2), if any."""
    versions = list_versions(data_dir)
    index = versions.index(version)
    return versions[index - 1] if index > 0 else None


def list_class_names(version_dir: str | Path) -> list[str]:
    """Class folder names of one version (no hashing): for counting classes across versions."""
    return sorted(p.name for p in Path(version_dir).iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_version(
    version_dir: str | Path, on_bad_image: str = "fail", root: str | Path | None = None, use_cache: bool = True
) -> Manifest:
    """Hash and measure every image of a version folder.

    ``root`` (default: the parent of ``version_dir``) bounds symlinks: a link that resolves outside it
    is refused, so a manifest never vouches for files the dataset does not contain. With ``use_cache``,
    files whose path, size, mtime and inode are unchanged since the last scan are not read again
    (see :class:`RecordCache`).
    """
    if on_bad_image not in ON_BAD_IMAGE_CHOICES:
        raise DatasetError(f"on_bad_image must be one of {ON_BAD_IMAGE_CHOICES}, got {on_bad_image!r}.")
    version_dir = Path(version_dir)
    root = Path(root) if root is not None else version_dir.parent
    candidates, ignored, classes = collect_candidates(version_dir, root.resolve())
    if not classes:
        raise DatasetError(
            f"version folder {str(version_dir)!r} has no class folders: put images in "
            f"{version_dir}/<class>/ (for example {version_dir}/cat/cat_01.jpg)."
        )
    results = read_all_records(candidates, RecordCache.default() if use_cache else None)
    records = []
    for (rel_path, _), result in zip(candidates, results):
        if isinstance(result, ImageRecord):
            records.append(result)
        elif on_bad_image == "skip":
            LOGGER.warning("skipping bad image %s: %s", rel_path, result)
            ignored.append({"path": rel_path, "reason": result})
        else:
            raise DatasetError(
                f"bad image {version_dir / rel_path}: {result}. Replace or remove the file, or pass "
                f"-P on_bad_image=skip to leave it out (it is then listed in the run)."
            )
    if not records:
        raise DatasetError(
            f"version folder {str(version_dir)!r} contains no readable images "
            f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    manifest = Manifest(str(version_dir), records, classes, ignored)
    for name, count in manifest.class_counts().items():
        if count == 0:
            LOGGER.warning("class folder %s/%s holds no images: its count is 0", version_dir, name)
    manifest.digest = compute_digest(records)
    return manifest


def collect_candidates(version_dir: Path, root: Path) -> tuple[list[tuple[str, str]], list[dict], list[str]]:
    """Walk ``version_dir/<class>/<file>``; return image candidates, ignored entries, class names.

    ``os.scandir`` gives each entry's type without a ``stat`` call per file (this walk runs on every
    re-log, so it stays cheap for thousands of files).
    """
    candidates: list[tuple[str, str]] = []  # (relative path, file path): plain strings, 20k Paths cost 0.2 s
    ignored: list[dict] = []
    classes: list[str] = []
    for class_entry in sorted_entries(version_dir):
        if class_entry.name.startswith("."):
            ignored.append({"path": class_entry.name, "reason": "hidden"})
            continue
        refuse_escaping_link(class_entry, root)
        if not class_entry.is_dir():
            ignored.append({"path": class_entry.name, "reason": "not inside a class folder"})
            continue
        check_class_name(Path(class_entry.path))
        classes.append(class_entry.name)
        for entry in sorted_entries(class_entry.path):
            rel_path = f"{class_entry.name}/{entry.name}"
            reason = ignore_reason(entry, root)
            if reason:
                ignored.append({"path": rel_path, "reason": reason})
            else:
                candidates.append((rel_path, entry.path))
    return candidates, ignored, classes


def sorted_entries(folder: str | Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda e: e.name)


def check_class_name(class_dir: Path) -> None:
    if not SAFE_SEGMENT.match(class_dir.name):
        raise DatasetError(
            f"class folder {str(class_dir)!r}: the name {class_dir.name!r} is not a safe artifact path "
            f"segment. Rename it using letters, digits, '_', '-' and '.' only (for example 'golden_retriever')."
        )


def ignore_reason(entry: os.DirEntry, root: Path) -> str | None:
    """Why ``entry`` is not an image of the dataset, or None when it is one; refuses escaping links."""
    refuse_escaping_link(entry, root)
    if entry.name.startswith("."):
        return "hidden"
    if entry.is_dir():
        return "nested folder (classes are one level deep)"
    if os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
        return "not an image extension"
    return None


def refuse_escaping_link(entry: os.DirEntry, root: Path) -> None:
    if entry.is_symlink():
        target = Path(entry.path).resolve()
        if not target.is_relative_to(root):
            raise DatasetError(
                f"{entry.path} is a symbolic link to {target}, outside data_dir {str(root)!r}: refused. "
                f"Copy the file into the dataset folder instead."
            )


def read_records(items: list[tuple[str, str]]) -> list[ImageRecord | str]:
    return [read_record(item) for item in items]


def read_all_records(candidates: list[tuple[str, str]], cache: "RecordCache | None") -> list[ImageRecord | str]:
    """Records for every candidate, in order: from the cache where the file is unchanged, else read."""
    keys, cached = [], {}
    if cache:
        # stat() follows links, so a link that now points elsewhere has another inode: a miss
        stats = [os.stat(file) for _, file in candidates]
        keys = [(os.path.abspath(file), st.st_size, st.st_mtime_ns, st.st_ino) for (_, file), st in zip(candidates, stats)]
        cached = cache.lookup(keys)
    results: list[ImageRecord | str | None] = [None] * len(candidates)
    missing = []
    for index, (rel_path, _) in enumerate(candidates):
        hit = cached.get(keys[index]) if cached else None
        if hit:
            results[index] = ImageRecord(rel_path, rel_path.split("/", 1)[0], keys[index][1], *hit)
        else:
            missing.append(index)
    chunks = [missing[i : i + HASH_CHUNK] for i in range(0, len(missing), HASH_CHUNK)]
    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        for chunk, chunk_results in zip(chunks, pool.map(lambda c: read_records([candidates[i] for i in c]), chunks)):
            for index, result in zip(chunk, chunk_results):
                results[index] = result
    if cache and missing:
        cache.store([(keys[i], results[i]) for i in missing if isinstance(results[i], ImageRecord)])
    return results


class RecordCache:
    """File hashes and image sizes keyed by (absolute path, size, mtime_ns, inode).

    The same idea as git's index and dvc's state database: a re-scan of an unchanged folder costs one
    ``stat`` per file instead of reading every byte. Any write to a file changes its mtime (and usually
    its size), so a changed file is always read again. Stored in sqlite under ``$IMAGE_LINEAGE_CACHE_DIR``
    (default ``~/.cache/image_lineage``); set it to ``off`` to disable.
    """

    ENV = "IMAGE_LINEAGE_CACHE_DIR"

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS records (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " inode INTEGER, sha256 TEXT, width INTEGER, height INTEGER)"
            )

    @classmethod
    def default(cls) -> "RecordCache | None":
        folder = os.environ.get(cls.ENV) or str(Path.home() / ".cache" / "image_lineage")
        if folder.lower() == "off":
            return None
        try:
            return cls(Path(folder) / "file_records.sqlite")
        except (OSError, sqlite3.Error) as exc:  # a read-only home must not stop logging
            LOGGER.warning("hash cache disabled (%s): %s", folder, exc)
            return None

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def lookup(self, keys: list[tuple[str, int, int, int]]) -> dict[tuple, tuple[str, int, int]]:
        """{key: (sha256, width, height)} for the keys whose stored size, mtime and inode still match."""
        wanted = set(keys)
        found = {}
        with contextlib.closing(self.connect()) as db:
            for start in range(0, len(keys), 500):  # sqlite caps the number of bound parameters
                paths = [key[0] for key in keys[start : start + 500]]
                rows = db.execute(
                    f"SELECT path, size, mtime_ns, inode, sha256, width, height FROM records WHERE path IN ({','.join('?' * len(paths))})",
                    paths,
                )
                for path, size, mtime_ns, inode, sha256, width, height in rows:
                    if (path, size, mtime_ns, inode) in wanted:
                        found[(path, size, mtime_ns, inode)] = (sha256, width, height)
        return found

    def store(self, entries: list[tuple[tuple[str, int, int, int], ImageRecord]]) -> None:
        rows = [(*key, r.sha256, r.width, r.height) for key, r in entries]
        try:
            with contextlib.closing(self.connect()) as db, db:
                db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:  # another process holding the lock too long: skip, never fail
            LOGGER.warning("could not update the hash cache %s: %s", self.path, exc)


def read_record(item: tuple[str, str]) -> ImageRecord | str:
    """Hash one file and read its size from the header; a string says why it is not a usable image."""
    rel_path, file = item
    with open(file, "rb") as handle:
        data = handle.read()
    if not data:
        return "zero-byte file"
    size = jpeg_size(data)
    if size is None:  # not a well-formed JPEG header: PIL decides, and names what is wrong
        try:
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                image.verify()  # checks structure (PNG CRCs, GIF/BMP/WebP headers) without a full decode
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return f"not a readable image ({exc})"
    label = rel_path.split("/", 1)[0]
    return ImageRecord(rel_path, label, len(data), hashlib.sha256(data).hexdigest(), *size)


# Start-of-frame markers carry the picture size; C4 (Huffman tables), C8 and CC (arithmetic coding) do not.
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, or None when the header is not well formed.

    Walking the marker segments takes microseconds; ``PIL.Image.open`` spends ~60 us per file parsing
    every segment in Python, most of a cold scan's time, for the same answer (its ``verify`` checks
    nothing more for JPEG).
    """
    if data[:2] != b"\xff\xd8":
        return None
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in JPEG_SOF_MARKERS:
            if position + 9 > end or length < 7:
                return None
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return (width, height) if width and height else None
        position += 2 + length
    return None


def compute_digest(records: list[ImageRecord]) -> str:
    """sha256 over the sorted ``path, label, sha256`` lines: independent of order, mtime and location."""
    lines = sorted(f"{r.path}\t{r.label}\t{r.sha256}\n" for r in records)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def diff_manifests(old: Manifest | None, new: Manifest) -> dict:
    """What changed from ``old`` to ``new``: added, removed, modified (same path, other bytes) and
    relabelled (same bytes, now in another class). Paths are relative to the version folders."""
    old_records = {r.path: r for r in old.records} if old else {}
    new_records = {r.path: r for r in new.records}
    removed = {p: r for p, r in old_records.items() if p not in new_records}
    added = {p: r for p, r in new_records.items() if p not in old_records}
    modified = sorted(p for p in new_records.keys() & old_records.keys() if new_records[p].sha256 != old_records[p].sha256)
    relabelled = []
    removed_by_hash = {}
    for path, record in removed.items():
        removed_by_hash.setdefault(record.sha256, []).append(path)
    for path, record in sorted(added.items()):
        sources = [p for p in removed_by_hash.get(record.sha256, []) if removed[p].label != record.label]
        if sources:
            source = sources[0]
            removed_by_hash[record.sha256].remove(source)
            relabelled.append({"from": source, "to": path, "from_label": removed[source].label, "to_label": record.label})
    moved_from = {item["from"] for item in relabelled}
    moved_to = {item["to"] for item in relabelled}
    return {
        "old_version": os.path.basename(old.version_dir) if old else None,
        "new_version": os.path.basename(new.version_dir),
        "added": sorted(p for p in added if p not in moved_to),
        "removed": sorted(p for p in removed if p not in moved_from),
        "modified": modified,
        "relabelled": relabelled,
        "unchanged": len(new_records.keys() & old_records.keys()) - len(modified),
    }


def summarize_diff(diff: dict) -> str:
    """One line for tables: ``v1→v2: +2 -1 ~0 relabelled 0``."""
    base = diff["old_version"] or "(none)"
    return (
        f"{base}->{diff['new_version']}: +{len(diff['added'])} -{len(diff['removed'])} "
        f"~{len(diff['modified'])} relabelled {len(diff['relabelled'])}"
    )
