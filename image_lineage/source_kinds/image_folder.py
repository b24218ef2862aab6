"""Image folders (``<folder>/<class>/<image>``, or ``train*/``, ``val*/``, ``test*/`` splits of them) as a
source kind: the Hugging Face ``imagefolder`` builder, the label from the parent folder.

The digest is the folder manifest's (:func:`image_lineage.manifest.scan_version`), so ``log_hf_dataset``
and ``log_folder_dataset`` give a folder the same digest.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

from image_lineage.coco import split_name
from image_lineage.manifest import Manifest, scan_version
from image_lineage.profiles import image_profile
from image_lineage.quality import QualityImage
from image_lineage.source_kinds.base import SPLIT_CHOICES, LoadedSplit, LoadOptions, SourceKind

IMAGEFOLDER = "imagefolder"


class ImageFolder(SourceKind):
    name = "folder"

    def detect(self, source: str) -> bool:
        return Path(source).is_dir()

    def available(self, source: str) -> dict[str, Path]:
        return folder_splits(Path(source))

    def load_split(self, split: str, handle: Path, options: LoadOptions) -> LoadedSplit:
        import datasets

        manifest = scan(handle, options)
        # drop_labels=False: a single class folder still gives a label column (imagefolder drops it otherwise)
        dataset = datasets.load_dataset(IMAGEFOLDER, data_dir=str(handle.resolve()), split="train", drop_labels=False)
        skipped = {str((handle / item["path"]).resolve()) for item in manifest.ignored}
        if skipped:  # bad images left out of the manifest (on_bad_image=skip) leave the dataset too
            dataset = without_files(dataset, skipped)
        source = HuggingFaceDatasetSource(path=IMAGEFOLDER, data_dir=str(handle.resolve()), split="train")
        counts, ignored = label_counts_of(dataset, manifest)
        records = manifest.records
        profile = image_profile((r.width for r in records), (r.height for r in records), (r.size for r in records),
                                counts, manifest.digest)
        return LoadedSplit(split, dataset, manifest.digest, counts, "rows", "label", source,
                           ignored, profile=profile, images=split_images(manifest, split, handle))

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        if source_type != "hugging_face" or source.get("path") != IMAGEFOLDER:
            return None
        return self.load_split(source.get("split") or "train", Path(source["data_dir"]), options)

    def list_images(self, split: str, handle: Path, options: LoadOptions) -> list[QualityImage]:
        return split_images(scan(handle, options), split, handle)


def label_counts_of(dataset, manifest: Manifest) -> tuple[dict[str, int], list[dict]]:
    """Rows per class in the order of the dataset's ``ClassLabel`` (label i decodes to the i-th name logged),
    and the manifest's ignored entries plus every class folder that is no label (it holds no images)."""
    counts = manifest.class_counts()
    names = dataset.features["label"].names
    empty = [{"path": name, "reason": "class folder holds no images: not a label of the dataset"}
             for name in counts if name not in names]
    return {name: counts.get(name, 0) for name in names}, manifest.ignored + empty


def scan(handle: Path, options: LoadOptions) -> Manifest:
    return scan_version(handle, options.on_bad_image, root=handle, image_check=options.image_check,
                        perceptual=options.perceptual)


def split_images(manifest: Manifest, split: str, handle: Path) -> list[QualityImage]:
    """A split folder's images as the report names them: ``train/cat/x.jpg`` in split folders."""
    return manifest_images(manifest, split, f"{handle.name}/" if split_name(handle.name) == split else "")


def manifest_images(manifest: Manifest, split: str, prefix: str = "") -> list[QualityImage]:
    """A manifest's images for the leakage check, labels from their class folders."""
    root = Path(manifest.version_dir)
    return [QualityImage(prefix + r.path, str(root / r.path), split, r.label) for r in manifest.records]


def folder_splits(folder: Path) -> dict[str, Path]:
    """``train*/``, ``val*/``, ``test*/`` sub-folders are splits; otherwise the folder is one train split."""
    subfolders = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    splits = {split_name(p.name): p for p in subfolders if split_name(p.name) in SPLIT_CHOICES}
    return splits if splits and len(splits) == len(subfolders) else {"train": folder}


def without_files(dataset, paths: set[str]):
    """The rows whose image file is not in ``paths`` (image cells read undecoded: no pixels touched)."""
    import datasets

    feature = dataset.features["image"]
    plain = dataset.cast_column("image", datasets.Image(decode=False))
    kept = plain.filter(lambda cell: str(Path(cell["path"]).resolve()) not in paths, input_columns="image")
    return kept.cast_column("image", feature)
