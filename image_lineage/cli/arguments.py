"""Flag types and the flags several commands share. MLproject parameters arrive as strings and cannot be
empty: placeholders (``auto``, ``none``) become None here, at the command-line edge; the library never sees them."""

from __future__ import annotations

import argparse

from image_lineage.core.names import (
    ENGINE_CHOICES, IMAGE_CHECK_CHOICES, ON_BAD_IMAGE_CHOICES, ON_LEAKAGE_CHOICES, PLACEHOLDERS, QUALITY_CHECK_CHOICES, SNAPSHOT_CHOICES,
)


def parse_bool(text: str) -> bool:
    """MLproject parameters arrive as strings: accept the usual spellings."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    # argparse prints an ArgumentTypeError's own words (for a ValueError only "invalid parse_bool value")
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def optional(text: str) -> str | None:
    """``auto``, ``none`` or an empty value (MLproject cannot pass "nothing") -> None; else the text."""
    return None if str(text).strip().lower() in PLACEHOLDERS else str(text)


def optional_list(text: str) -> list[str] | None:
    """Comma-separated names, or None for a placeholder (``auto``)."""
    return None if optional(text) is None else [part.strip() for part in text.split(",") if part.strip()]


def parse_count(text: str) -> int:
    """A non-negative whole number; MLproject ``float`` parameters may arrive as ``50.0``."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(value)


def add_image_arguments(parser, leakage_check: bool = True) -> None:
    """The flags of every entry point that reads images: the image check, what a bad image does, and (with
    ``leakage_check``) the leakage check and what leakage does."""
    parser.add_argument("--image-check", choices=IMAGE_CHECK_CHOICES, default="structure",
                        help="structure: every file must be whole (checked while hashing); decode: also decode "
                        "every image; none: header only")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="local",
                        help="where the image pass runs: local (threads and processes of this machine) or spark "
                        "(a job over Spark's binaryFile source: the active session, or one built from "
                        "IMAGE_LINEAGE_SPARK_CONF; the same records, digests and pairs)")
    parser.add_argument("--on-bad-image", choices=ON_BAD_IMAGE_CHOICES, default="fail",
                        help="fail on an image the check rejects, or skip it (a COCO image with its annotations) "
                        "and list it in ignored_files.json")
    if leakage_check:
        parser.add_argument("--quality-check", choices=QUALITY_CHECK_CHOICES, default="on",
                            help="on: find duplicates, near-duplicates, leakage and label conflicts (quality/* "
                            "metrics, tag quality.status, quality/pairs.csv and report.html); off")
        parser.add_argument("--on-leakage", choices=ON_LEAKAGE_CHOICES, default="warn",
                            help="warn, fail (the run ends FAILED with its report, before any training) or ignore")


def add_snapshot_argument(parser) -> None:
    """The flag of every entry point that stores dataset files (image_lineage.tracking.snapshots)."""
    parser.add_argument("--snapshot", choices=SNAPSHOT_CHOICES, default="reuse",
                        help="reuse: when a run on this tracking server (any experiment) already holds the files of "
                        "the same content digest, record a link to them (tags dataset.snapshot_run_id, "
                        "dataset.snapshot_uri) instead of uploading them again; copy: upload them anyway")
