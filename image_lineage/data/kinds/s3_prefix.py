"""``s3://bucket/prefix`` sources. A prefix of image folders (``<prefix>/<class>/<image>``, or split folders of
them) or a COCO prefix (``annotations/instances_<name>.json`` and ``<name>/``) is streamed: listed, then each
image object read into memory and through the image pass, never written to disk
(:class:`image_lineage.data.object_store.ObjectTree`); only a COCO prefix's annotation files are copied (the
COCO reader checks them as files; they are a few MB where the images are GB). Records are cached by ETag, so a
re-log of an unchanged prefix lists it and reads no object. A prefix is mirrored to a local folder
(:mod:`image_lineage.data.object_store`: only objects whose ETag changed are read) only where a consumer
needs the files on disk: the Hugging Face form (``log_hf_dataset``: the ``imagefolder`` builder, the COCO form's
image paths), built when a flow first asks for it, and training (``coco_finetune``: ``LoadOptions.files_on_disk``).
Either way a dataset has the same digest in a bucket as on a laptop. A prefix of version prefixes holds
versions (``s3://bucket/cats`` holding ``v1/`` and ``v2/``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from image_lineage.core.errors import LineageError
from image_lineage.core.names import IMAGE_EXTENSIONS
from image_lineage.data.coco.hf_form import coco_to_hf
from image_lineage.data.coco.layout import INSTANCES_PATTERN, CocoSplit, find_coco_splits
from image_lineage.data.folders import scan_version
from image_lineage.data.kinds.base import (
    LoadedSplit, LoadOptions, SourceKind, SourceRef, manifest_split, pick_splits, refuse_splits,
)
from image_lineage.data.kinds.coco_folder import CocoFolder, index_split_loaded, refuse_unannotated
from image_lineage.data.kinds.image_folder import IMAGEFOLDER, imagefolder_dataset, split_folders, version_split
from image_lineage.data.object_store import (
    ObjectTree, is_object_uri, list_objects, list_prefixes, mirror_prefix, mirror_root, s3_client, split_uri,
    what_is_there,
)


@dataclass(frozen=True)
class StreamedSplit:
    """A split of a streamed prefix of image folders: its location, its name in the leakage report, the listing."""

    uri: str
    prefix: str
    tree: ObjectTree

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rpartition("/")[2]


@dataclass(frozen=True)
class StreamedCocoSplit:
    """A split of a streamed COCO prefix: the prefix, and the split as the COCO reader takes it (its annotation
    file copied to the mirror folder, its images' prefix an ``s3://`` location), and the prefix's listing."""

    uri: str
    split: CocoSplit
    tree: ObjectTree

    @property
    def name(self) -> str:
        return self.split.name


class ObjectStorePrefix(SourceKind):
    name = "s3"

    def __init__(self):
        self.trees: dict[str, ObjectTree] = {}  # source -> its listing

    def detect(self, source: str) -> bool:
        return is_object_uri(source)

    def tree(self, source: str, refresh: bool = True) -> ObjectTree:
        """The prefix's listing; ``refresh``: list it again (a log starts with ``splits``, which does)."""
        if refresh or source not in self.trees:
            self.trees[source] = ObjectTree(source, list_objects(s3_client(), source))
        return self.trees[source]

    def available(self, source: str) -> dict[str, object]:
        return split_handles(self.tree(source))

    def splits(self, source: str, wanted: str) -> dict[str, object]:
        tree = self.tree(source)  # one listing per load: a prefix of a million objects takes a while
        if is_coco(tree):
            refuse_unannotated(source, wanted, unannotated_folders(tree))
        return pick_splits(split_handles(tree), wanted, source)

    def passed_over(self, source: str) -> list[dict]:
        tree = self.tree(source, refresh=False)
        return unannotated_folders(tree) if is_coco(tree) else []

    def whole(self, source: str) -> object:
        tree = self.tree(source)
        handles = split_handles(tree)
        if not is_coco(tree):
            return version_split(handles, source)
        if len(handles) != 1:
            raise refuse_splits(source, list(handles))
        return next(iter(handles.values()))

    def load_split(self, split: str, handle: object, options: LoadOptions) -> LoadedSplit:
        if isinstance(handle, StreamedCocoSplit):
            return mirrored_coco_split(split, handle, options) if options.files_on_disk else streamed_coco_split(
                split, handle, options)
        return streamed_split(split, handle, options)

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        """A streamed COCO split again, from its prefix as it is now (a folder prefix is reloaded as a folder)."""
        if source_type != "coco" or not is_object_uri(source.get("uri", "")):
            return None
        handle = next((h for h in streamed_coco_splits(self.tree(source["uri"])).values() if h.name == source["name"]),
                      None)
        if handle is None:
            raise LineageError(f"{source['annotation_file']} is no longer in {source['uri']}: the COCO split "
                               f"{source['name']} cannot be read again.")
        return self.load_split(handle.split.split, handle, options)

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
                            perceptual=options.perceptual, engine=options.engine, tree=handle.tree)
    bucket, prefix = split_uri(handle.uri)
    data_dir = str((mirror_root() / bucket / prefix).resolve())  # where mirror_prefix puts it
    skipped = {f"{data_dir}/{item['path']}" for item in manifest.ignored}
    source = SourceRef("hugging_face", {"path": IMAGEFOLDER, "data_dir": data_dir, "split": "train"})

    def build_dataset():
        mirror_prefix(handle.uri)
        return imagefolder_dataset(data_dir, skipped)

    return replace(manifest_split(split, manifest, source, build_dataset, handle.prefix), remote=handle.tree.mirror())


def is_coco(tree: ObjectTree) -> bool:
    """Whether the prefix is a COCO folder (it holds ``annotations/instances_<name>.json``, as a local one does)."""
    return bool(annotation_files(tree))


def split_handles(tree: ObjectTree) -> dict[str, object]:
    """{split: handle} of a listed prefix: a COCO prefix's annotated splits, or its image folders' split folders
    (``train*/``, ``val*/``, ``test*/``), or the prefix as one train split."""
    if is_coco(tree):
        return streamed_coco_splits(tree)
    named = split_folders([e.name for e in tree.entries(tree.uri) if e.is_dir() and not e.name.startswith(".")])
    return ({split: StreamedSplit(f"{tree.uri}/{name}", f"{name}/", tree) for split, name in named.items()}
            if named else {"train": StreamedSplit(tree.uri, "", tree)})


def unannotated_folders(tree: ObjectTree) -> list[dict]:
    """Folders of a COCO prefix holding images but no ``annotations/instances_<name>.json``, as for a local one."""
    annotated = {INSTANCES_PATTERN.match(name).group("name") for name in annotation_files(tree)} | {"annotations"}
    return [{"path": entry.name, "reason": f"no annotations/instances_{entry.name}.json"}
            for entry in tree.entries(tree.uri) if entry.is_dir() and not entry.name.startswith(".")
            and entry.name not in annotated and holds_images(tree, entry.path)]


def holds_images(tree: ObjectTree, folder: str) -> bool:
    return any(os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS for entry in tree.entries(folder))


def annotation_files(tree: ObjectTree) -> list[str]:
    """The names of the prefix's ``annotations/instances_<name>.json`` objects, as listed now."""
    return [entry.name for entry in tree.entries(f"{tree.uri}/annotations")
            if entry.is_file() and INSTANCES_PATTERN.match(entry.name)]


def streamed_coco_splits(tree: ObjectTree) -> dict[str, StreamedCocoSplit]:
    """{split: handle} of a COCO prefix, by the annotation files it lists now: those objects copied (the COCO
    reader checks them as files), each split's images left where they are."""
    folder = mirror_prefix(f"{tree.uri}/annotations").folder
    splits = {}
    for name in sorted(annotation_files(tree)):
        layout_name = INSTANCES_PATTERN.match(name).group("name")
        split = CocoSplit(layout_name, folder / name, f"{tree.uri}/{layout_name}")
        splits[split.split] = StreamedCocoSplit(tree.uri, split, tree)
    return splits


def streamed_coco_split(split: str, handle: StreamedCocoSplit, options: LoadOptions) -> LoadedSplit:
    """A COCO split read by its annotation file, each image object through the image pass. Its Hugging Face
    form is built from a mirror of the prefix, made only when a flow asks for that form (its images are paths)."""
    loaded = CocoFolder().load_split(split, handle.split, options)
    index = loaded.index

    def build_dataset():
        folder = mirror_prefix(handle.uri).folder
        return coco_to_hf(replace(index, split=replace(index.split, images_dir=folder / handle.name)))

    return replace(loaded, build_dataset=build_dataset, remote=handle.tree.mirror())


def mirrored_coco_split(split: str, handle: StreamedCocoSplit, options: LoadOptions) -> LoadedSplit:
    """The split with its files mirrored to disk: for a consumer that reads them there (training). The image
    pass reads the mirror, except with ``engine=spark``: the executors cannot see this machine's disk, so they
    read the objects, and the split then points at the mirror."""
    mirror = mirror_prefix(handle.uri)
    local = next(h for h in find_coco_splits(mirror.folder).values() if h.name == handle.name)
    if options.engine != "spark":
        return replace(CocoFolder().load_split(split, local, options), remote=mirror)
    streamed = CocoFolder().load_split(split, handle.split, options)
    index = replace(streamed.index, split=replace(streamed.index.split, images_dir=local.images_dir))
    return replace(index_split_loaded(index, split, streamed.digest), remote=mirror)
