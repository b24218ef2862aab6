"""Manifests of image folders: every image's path, label, size, sha256 and geometry, and their content digest.

A version folder holds one sub-folder per class (the label comes from the parent folder, as in the
Hugging Face ``imagefolder`` builder)::

    image_dataset/v2/cat/cat_01.jpg
    image_dataset/v2/dog/dog_01.jpg

The digest is the sha256 of the canonical manifest: one ``path<TAB>label<TAB>sha256`` line per image,
sorted by path. It depends on content and placement only, so a copy, another file order or new mtimes
give the same digest, while one flipped byte, a file moved to another class or an added file change it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from image_lineage.core.errors import DatasetError
from image_lineage.core.names import IMAGE_EXTENSIONS, ON_BAD_IMAGE_CHOICES, UNSUPPORTED_IMAGE_EXTENSIONS, require_choice
from image_lineage.data.cache import RecordCache, racy
from image_lineage.data.coco.layout import split_name
from image_lineage.data.facts import CHECK_DEPTH, ImageFacts
from image_lineage.data.object_store import is_object_uri
from image_lineage.data.read import old_objects_skipped, read_images

LOGGER = logging.getLogger(__name__)

# A class name becomes an artifact folder (samples/<class>/) and a metric key (class_<name>_count).
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    stored_form: tuple[str, bytes] | None = field(default=None, repr=False, compare=False)  # see stored()

    def class_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.classes}
        for record in self.records:
            counts[record.label] += 1
        return counts

    def non_empty_classes(self) -> list[str]:
        return [name for name, count in self.class_counts().items() if count]

    def to_json(self) -> str:
        """The manifest as JSON, one image per line. Formatted with one template per record: ``asdict``
        and an indented ``json.dumps`` (Python's pure-Python encoder) took 1.6 s for 100,000 images."""
        head = json.dumps({"digest": self.digest, "num_images": len(self.records), "classes": self.classes,
                           "ignored": self.ignored}, indent=1)
        quote = json.encoder.encode_basestring_ascii  # json's own C string escaper
        lines = ",\n".join(
            RECORD_LINE % (quote(r.path), quote(r.label), r.size, r.sha256, r.width, r.height) for r in self.records)
        return f'{head[:-2]},\n "images": [\n{lines}\n ]\n}}'


    def stored(self) -> tuple[str, bytes]:
        """The manifest as a run holds it: (``manifest.json`` or, past STORED_GZIP_FROM images,
        ``manifest.json.gz``, its bytes; gzipped without a date, so the same records give the same bytes). Made
        once: the run's files and its ``croissant.json`` (which names the file's sha256) both need it, and at
        100,000 images it takes 0.2 s."""
        if self.stored_form is None:
            text = self.to_json().encode()
            self.stored_form = (("manifest.json.gz", gzip.compress(text, 6, mtime=0))
                                if len(self.records) >= STORED_GZIP_FROM else ("manifest.json", text))
        return self.stored_form


STORED_GZIP_FROM = 10_000  # images: past this the manifest is manifest.json.gz. At 100,000 photos manifest.json
# is 17.1 MB a version (4.8 MB gzipped): too large for MLflow's preview anyway, and as large as half the files a
# version with 1 % of them changed adds, which is all the store uploads for it.
RECORD_LINE = '  {"path": %s, "label": %s, "size": %d, "sha256": "%s", "width": %d, "height": %d}'


def scan_version(
    version_dir: str | Path, on_bad_image: str = "fail", root: str | Path | None = None, use_cache: bool = True,
    image_check: str = "structure", perceptual: bool = False, engine: str = "local", tree=None,
) -> Manifest:
    """Hash, measure and check every image of a version folder (``<folder>/<class>/<image>``).

    ``root`` (default: the parent of ``version_dir``) bounds symlinks: a link that resolves outside it
    is refused, so a manifest never vouches for files the dataset does not contain. See
    :func:`manifest_from_files` for the rest.

    ``tree``: the listing of an object-store prefix (:class:`image_lineage.data.object_store.ObjectTree`);
    ``version_dir`` is then its ``s3://`` location, walked in the listing and read object by object.
    """
    if tree is not None:
        version_dir = str(version_dir).rstrip("/")
        candidates, ignored, classes = collect_candidates(version_dir, None, tree.entries)
    else:
        version_dir = Path(version_dir)
        root = Path(root) if root is not None else version_dir.parent
        candidates, ignored, classes = collect_candidates(Path(os.path.abspath(version_dir)), root.resolve())
    if not classes:
        raise DatasetError(
            f"version folder {str(version_dir)!r} has no class folders: put images in "
            f"{version_dir}/<class>/ (for example {version_dir}/cat/cat_01.jpg)."
        )
    return manifest_from_files(version_dir, candidates, classes, ignored, on_bad_image, use_cache, image_check,
                               perceptual, engine)


def manifest_from_files(root: str | Path, candidates: list[tuple[str, str, str]], classes: list[str],
                        ignored: list[dict], on_bad_image: str = "fail", use_cache: bool = True,
                        image_check: str = "structure", perceptual: bool = False, engine: str = "local") -> Manifest:
    """The manifest of image files given as ``(path relative to root, label, file)``: every file through the
    image pass (:func:`image_lineage.data.read.read_images`: one read each), bad ones refused or, with
    ``on_bad_image=skip``, listed in ``ignored``; the digest over the records. Any file-based source kind
    builds its manifest here.

    With ``use_cache``, files whose path, size, mtime, inode and ctime are unchanged are not read again, and when
    no file (nor label, nor option) changed since the last scan of ``root``, that scan's result stands (one
    cache row). ``image_check``: structure, decode or none; ``perceptual``: also compute perceptual hashes in
    the same read (for the leakage check); ``engine``: where files are read (``local`` or ``spark``).
    """
    require_choice("on_bad_image", on_bad_image, ON_BAD_IMAGE_CHOICES)
    with old_objects_skipped():
        root = root if is_object_uri(root) else Path(root)
        return scan_files(root, candidates, classes, ignored, on_bad_image, use_cache, image_check, perceptual,
                          engine)


def scan_files(root: Path, candidates, classes, ignored, on_bad_image, use_cache, image_check, perceptual,
               engine="local") -> Manifest:
    """:func:`manifest_from_files`'s work (``root``: a folder, or an object-store location whose objects are
    remembered one by one in the record cache, by ETag, not as a whole scan)."""
    remote = is_object_uri(root)
    folder = root if remote else os.path.abspath(root)
    cache = RecordCache.default() if use_cache else None
    state = scan_state(candidates, classes, ignored) if cache and not remote else None
    remembered = cache.scan_result(folder, state) if state else None
    if remembered:  # not one file changed since the last scan: its result stands if that scan went as deep
        try:
            manifest = manifest_from_scan(root, classes, ignored, remembered, (on_bad_image, image_check, perceptual))
            if manifest is not None:
                return manifest
        except (ValueError, KeyError, TypeError) as exc:  # a damaged row: scan as if it were not there
            LOGGER.debug("scan cache row for %s unreadable (%r): scanning again", folder, exc)
    results = read_images([file for _, _, file in candidates], image_check, cache=cache, perceptual=perceptual,
                          engine=engine)
    records = []
    for (rel_path, label, _), result in zip(candidates, results):
        if isinstance(result, ImageFacts):
            records.append(record_from_row((rel_path, label, result.size, result.sha256, result.width, result.height)))
        elif on_bad_image == "skip":
            LOGGER.warning("skipping bad image %s: %s", rel_path, result)
            ignored.append({"path": rel_path, "reason": result})
        else:
            raise DatasetError(
                f"bad image {root}/{rel_path}: {result}. Replace or remove the file, or pass "
                f"-P on_bad_image=skip to leave it out (it is then listed in the run)."
            )
    if not records:
        raise DatasetError(f"version folder {str(root)!r} contains no readable images "
                           f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}).{split_layout_hint(root, classes)}")
    manifest = Manifest(str(root), records, classes, ignored)
    warn_empty_classes(manifest.version_dir, manifest.class_counts())
    manifest.digest = compute_digest(records)
    if state:
        # two JSON lines: what every re-scan needs, then the records, parsed only when asked for
        head = {"digest": manifest.digest, "ignored": ignored, "counts": manifest.class_counts(),
                "check": image_check, "perceptual": perceptual}
        # the rows as plain tuples: dataclasses.astuple deep-copies each field (1.2 s for 100,000 records)
        rows = [(r.path, r.label, r.size, r.sha256, r.width, r.height) for r in records]
        cache.store_scan(folder, state, f"{json.dumps(head)}\n{json.dumps(rows)}")
    return manifest


def scan_state(candidates, classes, ignored) -> str | None:
    """A digest of everything a scan's result depends on but its options: each file's path, label and stat key
    (size, mtime, inode, ctime) and the folder's other entries; None when a file vanished meanwhile or changed
    too recently to trust its stat key (:func:`image_lineage.data.cache.racy`). The options are in the result
    (:func:`manifest_from_scan` takes a scan as deep as asked or deeper). (The cache's schema version covers
    the stored result's layout.)"""
    stat, lines, newest_ctime = os.stat, [], 0
    started = time.time_ns()
    try:
        for rel_path, label, file in candidates:  # one line a file (a repr of 20,000 tuples costs more)
            st = stat(file)
            newest_ctime = max(newest_ctime, st.st_ctime_ns)
            lines.append(f"{file}\0{rel_path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}\n")
    except OSError:
        return None
    if racy(newest_ctime, started):
        return None
    lines.append(repr((classes, ignored)))
    return hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def split_layout_hint(root: Path, classes: list[str]) -> str:
    """What to do when the "classes" of a version are split folders (``v1/train/cat/*.jpg``)."""
    splits = [name for name in classes if split_name(name) in ("train", "validation", "test")]
    if not splits or len(splits) < len(classes):
        return ""
    return (f" It holds split folders ({', '.join(f'{name}/' for name in splits)}) with the class folders inside: "
            f"the images sit one level too deep for a version (<version>/<class>/<image>). Log the splits with "
            f"log_hf_dataset -P source={root} (or check_dataset), or move each class folder up into the version.")


def manifest_from_scan(version_dir: Path, classes: list[str], ignored: list[dict], remembered: str,
                       options: tuple[str, str, bool]) -> Manifest | None:
    """The manifest a previous scan of the unchanged folder found (its skipped bad images said again), or None
    when that scan does not answer this one: it checked less deeply, had no perceptual hashes when they are
    asked for, or skipped bad images this scan must fail on or might keep. (The diff base of a version is read
    with ``on_bad_image=skip`` and no hashes: the version's own log, deeper, answers it.)"""
    on_bad_image, image_check, perceptual = options
    head_line, _, records_line = remembered.partition("\n")
    head = json.loads(head_line)
    skipped_bad = head["ignored"][len(ignored):]
    if CHECK_DEPTH[head["check"]] < CHECK_DEPTH[image_check] or (perceptual and not head["perceptual"]):
        return None
    # a deeper scan may have found bad files a lighter one would keep: its skips answer only the same scan
    if skipped_bad and (on_bad_image != "skip" or (head["check"], head["perceptual"]) != (image_check, perceptual)):
        return None
    for entry in skipped_bad:
        LOGGER.warning("skipping bad image %s: %s", entry["path"], entry["reason"])
    manifest = RememberedManifest(str(version_dir), records_line, classes, head["ignored"], head["digest"], head["counts"])
    warn_empty_classes(version_dir, head["counts"])
    return manifest


class RememberedManifest(Manifest):
    """A manifest from a previous scan whose records are made from the stored rows when first asked for: a
    re-log that needs only the digest skips 20,000 records (~40 ms)."""

    def __init__(self, version_dir: str, records_json: str, classes: list[str], ignored: list[dict], digest: str,
                 counts: dict[str, int]):
        self.version_dir, self.classes, self.ignored, self.digest = version_dir, classes, ignored, digest
        self._records_json, self._records, self._counts = records_json, None, counts

    def class_counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def records(self) -> list[ImageRecord]:
        if self._records is None:
            self._records = [record_from_row(row) for row in json.loads(self._records_json)]
            self._records_json = None
        return self._records


RECORD_FIELDS = tuple(ImageRecord.__dataclass_fields__)


def record_from_row(row: list | tuple) -> ImageRecord:
    """``ImageRecord(*row)`` at half the cost: a frozen dataclass sets each field through
    ``object.__setattr__`` (50 ms for 20,000 records on a scan); the instance is the same."""
    record = object.__new__(ImageRecord)
    record.__dict__.update(zip(RECORD_FIELDS, row))
    return record


def warn_empty_classes(version_dir: str | Path, counts: dict[str, int]) -> None:
    for name, count in counts.items():
        if count == 0:
            LOGGER.warning("class folder %s/%s holds no images: its count is 0", version_dir, name)


def collect_candidates(version_dir, root: Path | None,
                       entries=None) -> tuple[list[tuple[str, str, str]], list[dict], list[str]]:
    """Walk ``version_dir/<class>/<file>``; return image candidates, ignored entries, class names.

    ``os.scandir`` gives each entry's type without a ``stat`` call per file (this walk runs on every
    re-log, so it stays cheap for thousands of files). ``entries``: another lister of a folder's sorted entries
    (an object-store listing's, whose entries are never links; ``root`` is then None).
    """
    sorted_entries = entries or sorted_folder_entries
    candidates: list[tuple[str, str, str]] = []  # (relative path, label, file): plain strings, 20k Paths cost 0.2 s
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
            name = entry.name
            rel_path = f"{class_entry.name}/{name}"
            # the common case first, without a call: a plain file (not a link) with an image extension
            if name[0] != "." and name[name.rfind("."):].lower() in IMAGE_EXTENSIONS and entry.is_file(
                    follow_symlinks=False):
                candidates.append((rel_path, class_entry.name, entry.path))
                continue
            reason = ignore_reason(entry, root)
            if reason:
                ignored.append({"path": rel_path, "reason": reason})
            else:
                candidates.append((rel_path, class_entry.name, entry.path))
    return candidates, ignored, classes


def sorted_folder_entries(folder: str | Path) -> list[os.DirEntry]:
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
    extension = os.path.splitext(entry.name)[1].lower()
    if extension in UNSUPPORTED_IMAGE_EXTENSIONS:
        return (f"an image format the Hugging Face imagefolder builder does not read ({extension}): convert it to "
                "PNG, JPEG or WebP to include it")
    if extension not in IMAGE_EXTENSIONS:
        return "not an image extension"
    if not entry.is_file():  # reading a named pipe would wait forever
        return "not a regular file (a named pipe, socket or device)"
    return None


def refuse_escaping_link(entry: os.DirEntry, root: Path) -> None:
    """A symbolic link must lead, inside ``root``, to something that exists."""
    if entry.is_symlink():
        target = resolve_link(entry.path)
        if not target.is_relative_to(root):
            raise DatasetError(
                f"{entry.path} is a symbolic link to {target}, outside data_dir {str(root)!r}: refused. "
                f"Copy the file into the dataset folder instead."
            )


def resolve_link(path: str) -> Path:
    """Where a symbolic link leads; a dangling link or a loop is an error naming the link."""
    try:
        return Path(path).resolve(strict=True)
    except FileNotFoundError:
        raise DatasetError(
            f"{path} is a symbolic link to {os.readlink(path)}, which does not exist: remove the link, or "
            f"point it at the image file."
        ) from None
    except (RuntimeError, OSError):  # a loop: RuntimeError up to Python 3.12, OSError (ELOOP) after
        raise DatasetError(
            f"{path} is a symbolic link that leads back to itself (a loop): remove the link, or point it at "
            f"the image file."
        ) from None


def nfc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def compute_digest(records: list[ImageRecord]) -> str:
    """sha256 over the sorted ``path, label, sha256`` lines: independent of order, mtime and location.

    Paths enter in Unicode's composed form (NFC): macOS writes names decomposed (NFD), and the same folder
    copied from a Mac keeps its digest. (The manifest keeps each file's own name, which opens it.)"""
    lines = sorted(f"{nfc(r.path)}\t{r.label}\t{r.sha256}\n" for r in records)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
