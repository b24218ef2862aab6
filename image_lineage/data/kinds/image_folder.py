"""Image folders (``<folder>/<class>/<image>``, or ``train*/``, ``val*/``, ``test*/`` splits of them) as a
source kind; a folder of such folders holds versions. The Hugging Face form is the ``imagefolder``
builder's (the label from the parent folder).

The digest is the folder manifest's (:func:`image_lineage.data.folders.scan_version`), so every flow gives
a folder the same digest.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from image_lineage.core.errors import LineageError
from image_lineage.data.coco.layout import split_name
from image_lineage.data.folders import SAFE_SEGMENT, scan_version
from image_lineage.data.kinds.base import (
    SPLIT_CHOICES, LoadedSplit, LoadOptions, SourceKind, SourceRef, manifest_split, refuse_splits,
)

IMAGEFOLDER = "imagefolder"


@dataclass(frozen=True)
class FolderSplit:
    path: Path
    prefix: str = ""  # how the leakage report names its images: "train/" for a split folder, "" for the folder itself

    @property
    def name(self) -> str:
        return self.path.name


class ImageFolder(SourceKind):
    name = "folder"

    def detect(self, source: str) -> bool:
        return Path(source).is_dir()

    def available(self, source: str) -> dict[str, FolderSplit]:
        return folder_splits(Path(source))

    def load_split(self, split: str, handle: FolderSplit, options: LoadOptions) -> LoadedSplit:
        manifest = scan_version(handle.path, options.on_bad_image, root=handle.path, image_check=options.image_check,
                                perceptual=options.perceptual, engine=options.engine)
        data_dir = str(handle.path.resolve())
        source = SourceRef("hugging_face", {"path": IMAGEFOLDER, "data_dir": data_dir, "split": "train"})
        skipped = {str((handle.path / item["path"]).resolve()) for item in manifest.ignored}
        return manifest_split(split, manifest, source, lambda: imagefolder_dataset(data_dir, skipped), handle.prefix)

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        if source_type != "hugging_face" or source.get("path") != IMAGEFOLDER:
            return None
        return self.load_split(source.get("split") or "train", FolderSplit(Path(source["data_dir"])), options)

    def whole(self, source: str) -> FolderSplit:
        return version_split(self.available(source), source)

    def versions(self, source: str) -> list[str]:
        return [p.name for p in Path(source).iterdir() if p.is_dir() and not p.name.startswith(".")]

    def version_source(self, source: str, version: str) -> str:
        return str(Path(source) / version)

    def class_names(self, source: str) -> list[str]:
        """Class folder names (no hashing); a folder whose name is not a safe path segment belongs to no
        loggable version and is left out."""
        return sorted(p.name for p in Path(source).iterdir()
                      if p.is_dir() and not p.name.startswith(".") and SAFE_SEGMENT.match(p.name))


def folder_splits(folder: Path) -> dict[str, FolderSplit]:
    """``train*/``, ``val*/``, ``test*/`` sub-folders are splits; otherwise the folder is one train split."""
    if not folder.is_dir():
        raise LineageError(f"{folder} is not a folder.")
    named = split_folders([p.name for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")])
    return ({split: FolderSplit(folder / name, f"{name}/") for split, name in named.items()} if named
            else {"train": FolderSplit(folder)})


def version_split(splits: dict, source: str):
    """The one split of a folder read as a version (class folders in it), refusing split folders (train/, val/):
    the images would sit one level too deep."""
    if any(split.prefix for split in splits.values()):
        raise refuse_splits(source, list(splits))
    return splits["train"]


def split_folders(names: list[str]) -> dict[str, str]:
    """{split: sub-folder name} when every sub-folder is a split (``train*/``, ``val*/``, ``test*/``), else {}."""
    splits = {split_name(name): name for name in names if split_name(name) in SPLIT_CHOICES}
    return splits if splits and len(splits) == len(names) else {}


def imagefolder_dataset(data_dir: str, skipped: set[str]):
    """The folder through the ``imagefolder`` builder, without the bad images the manifest left out."""
    import datasets

    # drop_labels=False: a single class folder still gives a label column (imagefolder drops it otherwise);
    # the builder reads data_dir as a glob pattern: a folder named "photos [2024]" matched nothing
    dataset = datasets.load_dataset(IMAGEFOLDER, data_dir=glob.escape(str(data_dir)), split="train", drop_labels=False)
    return without_files(dataset, skipped) if skipped else dataset


def without_files(dataset, paths: set[str]):
    """The rows whose image file is not in ``paths`` (image cells read undecoded: no pixels touched)."""
    import datasets

    feature = dataset.features["image"]
    plain = dataset.cast_column("image", datasets.Image(decode=False))
    kept = plain.filter(lambda cell: str(Path(cell["path"]).resolve()) not in paths, input_columns="image")
    return kept.cast_column("image", feature)
