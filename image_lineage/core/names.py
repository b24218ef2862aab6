"""Names the project logs under (tags), the choices its parameters take, and the digest's logged form.

Every layer imports these from here, never from each other, so a constant has one home.
"""

from __future__ import annotations


# MLflow refuses dataset digests over 36 characters: the dataset input carries the first 32 hex digits
# of our sha256, and the full digest goes in the run tag TAG_DIGEST.
DIGEST_PREFIX_LEN = 32

TAG_DIGEST = "dataset.digest"  # full sha256 of the logged data (per split: dataset.digest.<split>)
# Snapshots (image_lineage.tracking.snapshots): the files of a digest are stored once per tracking server.
TAG_SNAPSHOT = "dataset.snapshot_run_id"  # the run that holds the files of an already-logged digest
TAG_SNAPSHOT_DIGEST = "dataset.snapshot_digest"  # on the run that holds them: the digest they are
TAG_SNAPSHOT_URI = "dataset.snapshot_uri"  # runs:/<holder>/<path> of the files
TAG_SNAPSHOT_SHARED = "dataset.snapshot_shared"  # "true" on a holder other runs rely on
TAG_ARCHIVE_SHA256 = "dataset.archive_sha256"  # sha256 of the holder's archive, checked on download
# The content store (image_lineage.tracking.content_store): each unique file once per server, in packs.
TAG_STORE_PACKS = "dataset.store_packs"  # the packs a version's files are in (16-hex ids; .2, .3, ... past 400)
TAG_PACK_SHA256 = "store.pack_sha256"  # on a store run: the sha256 of the pack it holds
TAG_PACK_INDEX_SHA256 = "store.index_sha256"  # and of its index
TAG_PACK_SIZE = "store.pack_size"
TAG_REPORTS_DIGEST = "dataset.reports_digest"  # of a version run's diff.json + ignored_files.json
SNAPSHOT_CHOICES = ("reuse", "copy")  # reuse the stored files of a digest, or upload a copy anyway
TAG_DIFF = "dataset.diff_summary"
TAG_SOURCE_KIND = "dataset.source_kind"
TAG_SOURCE_URI = "dataset.source_uri"  # an s3:// source (the dataset source names the local mirror read)
TAG_IGNORED = "dataset.ignored_files"
TAG_QUALITY_STATUS = "quality.status"  # clean, duplicates or leakage (the leakage check)
# a DVC-tracked folder (image_lineage.data.dvc): its DVC id now, the id its .dvc file or dvc.lock records, which
# file that is, whether they match (true, false, unknown), and what to do when they do not
TAG_DVC_MD5 = "dvc.md5"
TAG_DVC_RECORDED = "dvc.recorded_md5"
TAG_DVC_FILE = "dvc.tracked_by"
TAG_DVC_MATCHES = "dvc.matches"
TAG_DVC_WARNING = "dvc.warning"

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})  # what counts as an image file
# images in formats the Hugging Face imagefolder builder (and so every form of a version) does not read: listed
# among a run's ignored files with what to do, not as "not an image"
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset({".avif", ".heic", ".heif", ".jp2", ".jxl"})
TAG_SKIPPED_FOLDERS = "dataset.skipped_folders"  # folders of a source that were not logged, and why (JSON)

ON_BAD_IMAGE_CHOICES = ("fail", "skip")
# structure: every file must be whole (end markers, declared sizes), checked in the pass that hashes it;
# decode: also decode every image; none: hash and read the header only.
IMAGE_CHECK_CHOICES = ("structure", "decode", "none")
# where the image pass runs: this process (threads, helper processes) or a Spark job (image_lineage.data.spark_pass)
ENGINE_CHOICES = ("local", "spark")
QUALITY_CHECK_CHOICES = ("on", "off")  # the leakage check (duplicates, near-duplicates, label conflicts)
ON_LEAKAGE_CHOICES = ("warn", "fail", "ignore")  # what a pair of copies in two splits does

# MLproject parameters cannot be empty or absent, so "nothing" and "derive it" are spelled as words.
# The command-line edge (:mod:`image_lineage.cli.arguments`) turns them into None; the library never sees them.
PLACEHOLDERS = frozenset({"", "auto", "none"})


def digest_prefix(digest: str) -> str:
    """The part of a full sha256 hex digest that MLflow's dataset ``digest`` field holds."""
    return digest[:DIGEST_PREFIX_LEN]


def require_choice(parameter: str, value, choices) -> None:
    """Refuse a parameter value outside its choices, naming both (before anything is read or logged)."""
    if value not in choices:
        from image_lineage.core.errors import LineageError

        raise LineageError(f"{parameter} must be one of {', '.join(map(str, choices))}, got {value!r}.")
