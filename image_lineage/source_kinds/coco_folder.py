"""COCO folders (``annotations/instances_<name>.json`` + ``<name>/``) as a source kind, in the Hugging Face
form of :func:`image_lineage.coco.coco_to_hf`; the digest covers image bytes and annotations."""

from __future__ import annotations

from pathlib import Path

from image_lineage import coco
from image_lineage.core import DatasetError
from image_lineage.profiles import image_profile
from image_lineage.quality import QualityImage
from image_lineage.source_kinds.base import LoadedSplit, LoadOptions, SourceKind
from image_lineage.sources import CocoDatasetSource


class CocoFolder(SourceKind):
    name = "coco"

    def detect(self, source: str) -> bool:
        return Path(source).is_dir() and coco.is_coco_dir(source)

    def available(self, source: str) -> dict[str, coco.CocoSplit]:
        return coco.find_coco_splits(source)

    def splits(self, source: str, wanted: str) -> dict[str, coco.CocoSplit]:
        for folder in self.passed_over(source):  # asked for by name: say why it cannot be read
            if wanted != "all" and coco.split_name(folder["path"]) == wanted:
                raise DatasetError(
                    f"split {wanted!r}: {Path(source) / folder['path']} holds images but there is {folder['reason']}. "
                    f"Add the annotation file, or pick another split."
                )
        return super().splits(source, wanted)

    def passed_over(self, source: str) -> list[dict]:
        return coco.unannotated_folders(source)

    def load_split(self, split: str, handle: coco.CocoSplit, options: LoadOptions) -> LoadedSplit:
        return load_index(self.read(handle, options), split)

    def list_images(self, split: str, handle: coco.CocoSplit, options: LoadOptions) -> list[QualityImage]:
        return index_images(self.read(handle, options), split)

    @staticmethod
    def read(handle: coco.CocoSplit, options: LoadOptions) -> coco.CocoIndex:
        return coco.read_split_images(coco.index_split(handle), options.image_check, options.on_bad_image, options.perceptual)

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        if source_type != CocoDatasetSource._get_source_type():
            return None
        handle = CocoDatasetSource.from_dict(source).to_split()
        return self.load_split(handle.split, handle, options)


def load_index(index: coco.CocoIndex, split: str | None = None, digest: str | None = None) -> LoadedSplit:
    """A checked COCO index (a whole split, or a part held out of one) as a split to log; ``digest``: its
    :func:`coco.compute_coco_digest` when the caller has it already."""
    digest, counts = digest or coco.compute_coco_digest(index), coco.instances_per_category(index)
    return LoadedSplit(
        split or index.split.split, coco.coco_to_hf(index), digest, counts, "instances", None,
        CocoDatasetSource.from_split(index.split), index.ignored, coco.validation_report(index),
        profile=coco_profile(index, digest, counts), images=index_images(index, split or index.split.split),
    )


def index_images(index: coco.CocoIndex, split: str) -> list[QualityImage]:
    """A COCO index's images for the leakage check, each with its canonical annotations."""
    return [QualityImage(f"{index.split.name}/{image['file_name']}", str(index.image_path(image)), split,
                         annotations=coco.canonical_annotations(index, image)) for image in index.images]


def coco_profile(index: coco.CocoIndex, digest: str, counts: dict) -> dict:
    """The Datasets-panel summary of a COCO split (sizes from the image pass, geometry from the annotations)."""
    return image_profile((i["width"] for i in index.images), (i["height"] for i in index.images),
                         (index.facts[i["id"]].size for i in index.images if i["id"] in index.facts), counts, digest,
                         count_key="instances_per_category")
