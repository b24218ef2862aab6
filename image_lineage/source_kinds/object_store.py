"""``s3://bucket/prefix`` sources: the prefix is mirrored into a local folder (:mod:`image_lineage.object_store`:
only objects whose ETag changed are read) and the kind of that folder (COCO folder, image folder) does
the rest, so a dataset has the same digest in a bucket as on a laptop."""

from __future__ import annotations

from image_lineage.object_store import is_object_uri, mirror_prefix
from image_lineage.source_kinds.base import KINDS, LoadedSplit, LoadOptions, SourceKind


class ObjectStorePrefix(SourceKind):
    name = "s3"

    def __init__(self):
        self.folders: dict[str, str] = {}  # source -> its mirror, as the last listing left it

    def detect(self, source: str) -> bool:
        return is_object_uri(source)

    def local(self, source: str, refresh: bool = True) -> tuple[SourceKind, str]:
        """The kind of the mirrored folder, and the folder; ``refresh``: list the prefix again (a log starts
        with ``splits``, which does; what it asks next of the same source uses that listing)."""
        if refresh or source not in self.folders:
            self.folders[source] = str(mirror_prefix(source).folder)
        folder = self.folders[source]
        return next(kind for kind in KINDS if kind is not self and kind.detect(folder)), folder

    def splits(self, source: str, wanted: str) -> dict[str, object]:
        kind, folder = self.local(source)
        return {split: (kind, handle) for split, handle in kind.splits(folder, wanted).items()}

    def available(self, source: str) -> dict[str, object]:
        return self.splits(source, "all")

    def passed_over(self, source: str) -> list[dict]:
        kind, folder = self.local(source, refresh=False)
        return kind.passed_over(folder)

    def load_split(self, split: str, handle, options: LoadOptions) -> LoadedSplit:
        kind, inner = handle
        return kind.load_split(split, inner, options)

    def list_images(self, split: str, handle, options: LoadOptions):
        kind, inner = handle
        return kind.list_images(split, inner, options)

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        return None  # the splits record their mirror's kind and folder: that kind reloads them
