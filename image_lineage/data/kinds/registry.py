"""The registry of source kinds: which kind reads a ``source`` string, and the loads every flow shares."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from image_lineage.core.errors import LineageError
from image_lineage.core.names import ON_BAD_IMAGE_CHOICES, require_choice
from image_lineage.data.kinds.base import SPLIT_CHOICES, LoadedSplit, LoadOptions, SourceKind, resolve_targets

LOGGER = logging.getLogger(__name__)

KINDS: list[SourceKind] = []


def register(kind: SourceKind) -> SourceKind:
    """Add a kind; kinds are asked in registration order, so a more specific kind registers first."""
    KINDS.append(kind)
    return kind


def unregister(kind: SourceKind) -> None:
    KINDS.remove(kind)


def kind_of(source: str) -> SourceKind:
    """The first registered kind that recognises ``source``, or an error listing what is understood."""
    for kind in KINDS:
        if kind.detect(source):
            return kind
    raise LineageError(
        f"unknown source {source!r}: pass an image folder (e.g. image_dataset/v2), a COCO folder "
        f"(annotations/instances_<name>.json + <name>/), either under s3://<bucket>/<prefix> or dbfs:/<path>, or hub:<name> for a "
        f"Hugging Face hub dataset (kinds known: {', '.join(k.name for k in KINDS)})."
    )


def load_splits(source: str, split: str = "all", options: LoadOptions | None = None,
                targets: str | None = None) -> list[LoadedSplit]:
    """Every requested split of ``source``; ``split=all`` takes each split the source has."""
    require_choice("split", split, SPLIT_CHOICES)
    options = options or LoadOptions()
    require_choice("on_bad_image", options.on_bad_image, ON_BAD_IMAGE_CHOICES)
    kind = kind_of(source)
    loaded = [kind.load_split(name, handle, options) for name, handle in kind.splits(source, split).items()]
    if targets is not None:
        for one in loaded:
            one.targets = resolve_targets(one.dataset, targets)
    return loaded


def combined_digest(digests: dict[str, str]) -> str:
    """One digest for several splits ({split: digest}); a single split keeps its own."""
    if len(digests) == 1:
        return next(iter(digests.values()))
    return hashlib.sha256("".join(f"{split}:{digest}\n" for split, digest in digests.items()).encode()).hexdigest()


def load_whole(source: str, split: str, options: LoadOptions) -> LoadedSplit:
    """``source`` read as one dataset (a version folder), as split ``split``."""
    require_choice("on_bad_image", options.on_bad_image, ON_BAD_IMAGE_CHOICES)
    kind = kind_of(source)
    return kind.load_split(split, kind.whole(source), options)


def passed_over_folders(source: str, wanted: str = "all") -> list[dict]:
    """What ``split=all`` leaves out of ``source`` (``{"path", "reason"}`` each), logged as a warning; the
    caller records it in the run (tag ``dataset.skipped_folders``). A split asked for by name skips nothing."""
    folders = kind_of(source).passed_over(source) if wanted == "all" else []
    for folder in folders:
        LOGGER.warning("%s/%s is not logged: %s", source, folder["path"], folder["reason"])
    return folders


def reload_split(source_type: str, source: dict, options: LoadOptions | None = None) -> LoadedSplit:
    """A logged split again, by the kind that wrote its source."""
    for kind in KINDS:
        loaded = kind.reload(source_type, source, options or LoadOptions())
        if loaded is not None:
            return loaded
    raise LineageError(f"cannot reload a dataset from a {source_type!r} source.")


def dataset_name_of(source: str) -> str:
    """A dataset name derived from a source: ``image_dataset/v2`` -> ``image_dataset_v2``, ``hub:a/b`` -> ``a/b``,
    ``s3://bucket/cats/v2`` -> ``cats_v2`` (as the folder ``cats/v2`` is named)."""
    if "://" in source:
        parts = source.split("://", 1)[1].strip("/").split("/")
        return "_".join(parts[-2:])
    if ":" in source and not Path(source).exists():  # hub:<name> and other scheme-prefixed sources
        return source.split(":", 1)[1]
    path = Path(source).resolve()
    return f"{path.parent.name}_{path.name}" if path.parent.name else path.name
