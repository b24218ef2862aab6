"""Hugging Face hub datasets (``hub:<name>``, with ``split`` and ``revision``) as a source kind.

The digest is :func:`image_lineage.data.arrow_digest.compute_arrow_digest` over the rows' values. Offline (or
unreachable) the load fails naming the local-folder alternative.
"""

from __future__ import annotations

from image_lineage.core import config
from image_lineage.core.errors import DatasetError
from image_lineage.data.arrow_digest import compute_arrow_digest
from image_lineage.data.kinds.base import LoadedSplit, LoadOptions, SourceKind, SourceRef, label_counts, resolve_targets

PREFIX = "hub:"
# datasets' packaged builders read local files (imagefolder is the image-folder kind's): never a hub dataset
LOCAL_BUILDERS = frozenset({"imagefolder", "audiofolder", "videofolder", "csv", "json", "parquet", "text", "arrow"})


class HubDataset(SourceKind):
    name = "hub"
    image_files = False

    def detect(self, source: str) -> bool:
        return source.startswith(PREFIX)

    def splits(self, source: str, wanted: str) -> dict[str, str]:
        name = source[len(PREFIX):].strip()
        if not name:
            raise DatasetError(f"source {source!r} names no hub dataset: pass -P source=hub:<owner>/<name> "
                               "(for example hub:cifar10), or a local folder.")
        # the hub is asked for one split by name: without a download the splits it has are unknown
        return {"train" if wanted == "all" else wanted: name}

    def load_split(self, split: str, handle: str, options: LoadOptions) -> LoadedSplit:
        import datasets

        try:
            dataset = datasets.load_dataset(handle, split=split, revision=options.revision)
        except Exception as exc:  # datasets raises many types here (ConnectionError, OSError, HfHubHTTPError, ...)
            reason = ("offline mode is on (HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1)" if config.hf_offline()
                      else f"{type(exc).__name__}: {exc}")
            raise DatasetError(
                f"hub dataset {handle!r} (split {split!r}, revision {options.revision or 'main'!r}) could not be loaded: "
                f"{reason}. Without internet, use a local copy: -P source=<image folder> or -P source=<COCO folder>."
            ) from exc
        label = resolve_targets(dataset, None)
        counts = label_counts(dataset, label) if label else {}
        source = SourceRef("hugging_face", {"path": handle, "split": split, "revision": options.revision})
        digest = compute_arrow_digest(dataset, options.image_check)
        profile = {"num_rows": dataset.num_rows, "class_counts": counts or None, "digest": digest}
        return LoadedSplit(split, digest, counts, "rows", label, source, lambda: dataset, profile=profile)

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        if source_type != "hugging_face" or source.get("path") in LOCAL_BUILDERS:
            return None
        revision = source.get("revision") or options.revision
        return self.load_split(source.get("split") or "train", source["path"], LoadOptions(revision, options.image_check))
