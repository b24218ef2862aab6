"""``s3://bucket/prefix`` sources. A prefix of image folders (``<prefix>/<class>/<image>``, or split folders of
them) is streamed: listed, then each object read into memory and through the image pass, never written to
disk (:class:`image_lineage.data.object_store.ObjectTree`); its records are cached by ETag, so a re-log of an
unchanged prefix lists it and reads no object. It is mirrored to a local folder only where a consumer needs
files on disk: the Hugging Face ``imagefolder`` builder (``log_hf_dataset``). A COCO prefix (annotations and
image folders, read by annotation file) is mirrored (:mod:`image_lineage.data.object_store`: only objects
whose ETag changed are read) and read as the local COCO folder, for logging and training alike. Either way a
dataset has the same digest in a bucket as on a laptop. A prefix of version prefixes holds versions
(``s3://bucket/cats`` holding ``v1/`` and ``v2/``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from image_lineage.core.errors import LineageError
from image_lineage.data.folders import scan_version
from image_lineage.data.kinds.base import LoadedSplit, LoadOptions, SourceKind, SourceRef, manifest_split
from image_lineage.data.kinds.image_folder import IMAGEFOLDER, imagefolder_dataset, split_folders, version_split
from image_lineage.data.kinds.registry import KINDS
from image_lineage.data.object_store import (
    Mirror, ObjectTree, is_object_uri, list_objects, list_prefixes, mirror_prefix, mirror_root, s3_client, split_uri,
    what_is_there,
)


@dataclass(frozen=True)
class MirroredSplit:
    """A split of the mirrored folder: the folder's kind and handle, and the listing it was mirrored from."""

    kind: SourceKind
    inner: object
    mirror: Mirror

    @property
    def name(self) -> str:
        return getattr(self.inner, "name", "")


@dataclass(frozen=True)
class StreamedSplit:
    """A split of a streamed prefix of image folders: its location, its name in the leakage report, the listing."""

    uri: str
    prefix: str
    tree: ObjectTree

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rpartition("/")[2]


class ObjectStorePrefix(SourceKind):
    name = "s3"

    def __init__(self):
        self.mirrors: dict[str, Mirror] = {}  # source -> its mirror, as the last listing left it
        self.trees: dict[str, ObjectTree] = {}  # source -> its listing

    def detect(self, source: str) -> bool:
        return is_object_uri(source)

    def tree(self, source: str, refresh: bool = True) -> ObjectTree:
        """The prefix's listing; ``refresh``: list it again (a log starts with ``splits``, which does)."""
        if refresh or source not in self.trees:
            self.trees[source] = ObjectTree(source, list_objects(s3_client(), source))
        return self.trees[source]

    def streamed(self, source: str, refresh: bool = True) -> bool:
        """A prefix of image folders is streamed; one holding ``annotations/`` (COCO) is mirrored."""
        tree = self.tree(source, refresh)
        return not any(entry.name == "annotations" and entry.is_dir() for entry in tree.entries(tree.uri))

    def local(self, source: str, refresh: bool = True) -> tuple[SourceKind, Mirror]:
        """The kind of the mirrored folder, and the mirror."""
        if refresh or source not in self.mirrors:
            self.mirrors[source] = mirror_prefix(source)
        mirror = self.mirrors[source]
        folder = str(mirror.folder)
        return next(kind for kind in KINDS if kind is not self and kind.detect(folder)), mirror

    def available(self, source: str) -> dict[str, object]:
        if self.streamed(source):
            tree = self.tree(source, refresh=False)
            named = split_folders([e.name for e in tree.entries(tree.uri) if e.is_dir() and not e.name.startswith(".")])
            return ({split: StreamedSplit(f"{tree.uri}/{name}", f"{name}/", tree) for split, name in named.items()}
                    if named else {"train": StreamedSplit(tree.uri, "", tree)})
        kind, mirror = self.local(source)
        return {split: MirroredSplit(kind, handle, mirror) for split, handle in kind.available(str(mirror.folder)).items()}

    def splits(self, source: str, wanted: str) -> dict[str, object]:
        if self.streamed(source):
            return super().splits(source, wanted)
        kind, mirror = self.local(source)
        return {split: MirroredSplit(kind, handle, mirror)
                for split, handle in kind.splits(str(mirror.folder), wanted).items()}

    def passed_over(self, source: str) -> list[dict]:
        if self.streamed(source, refresh=False):
            return []
        kind, mirror = self.local(source, refresh=False)
        return kind.passed_over(str(mirror.folder))

    def whole(self, source: str) -> object:
        if self.streamed(source):
            return version_split(self.available(source), source)
        kind, mirror = self.local(source)
        return MirroredSplit(kind, kind.whole(str(mirror.folder)), mirror)

    def load_split(self, split: str, handle: object, options: LoadOptions) -> LoadedSplit:
        if options.engine == "spark":  # the objects are read by this process (or its mirror, on its own disk)
            uri = handle.mirror.uri if isinstance(handle, MirroredSplit) else handle.uri
            raise LineageError(f"engine=spark reads files where the cluster's executors see them; an s3:// prefix is "
                               f"read by this process. Use engine=local for {uri}, or give the cluster's own path "
                               f"to it (a /dbfs/... or /Volumes/... mount).")
        if isinstance(handle, MirroredSplit):
            return replace(handle.kind.load_split(split, handle.inner, options), remote=handle.mirror)
        return streamed_split(split, handle, options)

    def versions(self, source: str) -> list[str]:
        names = [name for name in list_prefixes(s3_client(), source) if not name.startswith(".")]
        if not names:
            raise LineageError(f"no version prefixes under {source} (such as {source.rstrip('/')}/v1/<class>/<image>). "
                               f"{what_is_there(s3_client(), *split_uri(source))}")
        return names

    def class_names(self, source: str) -> list[str]:
        return sorted(list_prefixes(s3_client(), source))


def streamed_split(split: str, handle: StreamedSplit, options: LoadOptions) -> LoadedSplit:
    """A split of image folders read object by object. Its Hugging Face form is built from a mirror of the
    prefix, made only when a flow asks for that form (the ``imagefolder`` builder reads files)."""
    manifest = scan_version(handle.uri, options.on_bad_image, image_check=options.image_check,
                            perceptual=options.perceptual, tree=handle.tree)
    bucket, prefix = split_uri(handle.uri)
    data_dir = str((mirror_root() / bucket / prefix).resolve())  # where mirror_prefix puts it
    skipped = {f"{data_dir}/{item['path']}" for item in manifest.ignored}
    source = SourceRef("hugging_face", {"path": IMAGEFOLDER, "data_dir": data_dir, "split": "train"})

    def build_dataset():
        mirror_prefix(handle.uri)
        return imagefolder_dataset(data_dir, skipped)

    return replace(manifest_split(split, manifest, source, build_dataset, handle.prefix), remote=handle.tree.mirror())
