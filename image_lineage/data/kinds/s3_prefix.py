"""``s3://bucket/prefix`` sources: the prefix is mirrored into a local folder (:mod:`image_lineage.data.object_store`:
only objects whose ETag changed are read) and the kind of that folder (COCO folder, image folder) does
the rest, so a dataset has the same digest in a bucket as on a laptop. A prefix of version prefixes holds
versions (``s3://bucket/cats`` holding ``v1/`` and ``v2/``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from image_lineage.core.errors import LineageError
from image_lineage.data.kinds.base import LoadedSplit, LoadOptions, SourceKind
from image_lineage.data.kinds.registry import KINDS
from image_lineage.data.object_store import Mirror, is_object_uri, list_prefixes, mirror_prefix, s3_client, split_uri, what_is_there


@dataclass(frozen=True)
class MirroredSplit:
    """A split of the mirrored folder: the folder's kind and handle, and the listing it was mirrored from."""

    kind: SourceKind
    inner: object
    mirror: Mirror

    @property
    def name(self) -> str:
        return getattr(self.inner, "name", "")


class ObjectStorePrefix(SourceKind):
    name = "s3"

    def __init__(self):
        self.mirrors: dict[str, Mirror] = {}  # source -> its mirror, as the last listing left it

    def detect(self, source: str) -> bool:
        return is_object_uri(source)

    def local(self, source: str, refresh: bool = True) -> tuple[SourceKind, Mirror]:
        """The kind of the mirrored folder, and the mirror; ``refresh``: list the prefix again (a log starts
        with ``splits``, which does; what it asks next of the same source uses that listing)."""
        if refresh or source not in self.mirrors:
            self.mirrors[source] = mirror_prefix(source)
        mirror = self.mirrors[source]
        folder = str(mirror.folder)
        return next(kind for kind in KINDS if kind is not self and kind.detect(folder)), mirror

    def available(self, source: str) -> dict[str, MirroredSplit]:
        kind, mirror = self.local(source)
        return {split: MirroredSplit(kind, handle, mirror) for split, handle in kind.available(str(mirror.folder)).items()}

    def splits(self, source: str, wanted: str) -> dict[str, MirroredSplit]:
        kind, mirror = self.local(source)
        return {split: MirroredSplit(kind, handle, mirror)
                for split, handle in kind.splits(str(mirror.folder), wanted).items()}

    def passed_over(self, source: str) -> list[dict]:
        kind, mirror = self.local(source, refresh=False)
        return kind.passed_over(str(mirror.folder))

    def whole(self, source: str) -> MirroredSplit:
        kind, mirror = self.local(source)
        return MirroredSplit(kind, kind.whole(str(mirror.folder)), mirror)

    def load_split(self, split: str, handle: MirroredSplit, options: LoadOptions) -> LoadedSplit:
        if options.engine == "spark":  # the mirror is on the driver's disk, where a cluster's executors cannot read
            raise LineageError(f"engine=spark reads files where the cluster's executors see them; an s3:// prefix is "
                               f"mirrored to this machine first. Use engine=local for {handle.mirror.uri}, or give "
                               f"the cluster's own path to it (a /dbfs/... or /Volumes/... mount).")
        return replace(handle.kind.load_split(split, handle.inner, options), remote=handle.mirror)

    def versions(self, source: str) -> list[str]:
        names = [name for name in list_prefixes(s3_client(), source) if not name.startswith(".")]
        if not names:
            raise LineageError(f"no version prefixes under {source} (such as {source.rstrip('/')}/v1/<class>/<image>). "
                               f"{what_is_there(s3_client(), *split_uri(source))}")
        return names

    def class_names(self, source: str) -> list[str]:
        return sorted(list_prefixes(s3_client(), source))
