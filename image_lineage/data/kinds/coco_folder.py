"""COCO folders (``annotations/instances_<name>.json`` + ``<name>/``) as a source kind, in the Hugging Face
form of :func:`image_lineage.data.coco.hf_form.coco_to_hf`; the digest covers image bytes and annotations."""

from __future__ import annotations

from pathlib import Path

from image_lineage.core.errors import DatasetError
from image_lineage.data.coco import index as coco
from image_lineage.data.coco.hf_form import coco_to_hf
from image_lineage.data.coco.layout import CocoSplit, find_coco_splits, is_coco_dir, split_name, unannotated_folders
from image_lineage.data.object_store import is_object_uri
from image_lineage.data.kinds.base import LoadedSplit, LoadOptions, SourceKind, SourceRef, SplitImage, image_profile

SOURCE_TYPE = "coco"


class CocoFolder(SourceKind):
    name = "coco"

    def detect(self, source: str) -> bool:
        return Path(source).is_dir() and is_coco_dir(source)

    def available(self, source: str) -> dict[str, CocoSplit]:
        return find_coco_splits(source)

    def splits(self, source: str, wanted: str) -> dict[str, CocoSplit]:
        refuse_unannotated(source, wanted, self.passed_over(source))
        return super().splits(source, wanted)

    def passed_over(self, source: str) -> list[dict]:
        return unannotated_folders(source)

    def load_split(self, split: str, handle: CocoSplit, options: LoadOptions) -> LoadedSplit:
        index = coco.index_split(handle, options.max_images or None)
        return index_split_loaded(coco.read_split_images(index, options.image_check, options.on_bad_image,
                                                         options.perceptual, options.engine), split)

    def reload(self, source_type: str, source: dict, options: LoadOptions) -> LoadedSplit | None:
        if source_type != SOURCE_TYPE or is_object_uri(source.get("images_dir", "")):  # streamed: the s3 kind's
            return None
        handle = CocoSplit(source["name"], Path(source["annotation_file"]), Path(source["images_dir"]))
        return self.load_split(handle.split, handle, options)


def refuse_unannotated(source: str, wanted: str, passed_over: list[dict]) -> None:
    """A split asked for by name whose folder has no annotation file: say why it cannot be read."""
    for folder in passed_over:
        if wanted != "all" and split_name(folder["path"]) == wanted:
            raise DatasetError(f"split {wanted!r}: {source.rstrip('/')}/{folder['path']} holds images but there is "
                               f"{folder['reason']}. Add the annotation file, or pick another split.")


def index_split_loaded(index: coco.CocoIndex, split: str | None = None, digest: str | None = None) -> LoadedSplit:
    """A checked COCO index (a whole split, or a part held out of one) as a split to log; ``digest``: its
    :func:`coco.compute_coco_digest` when the caller has it already."""
    digest, counts = digest or coco.compute_coco_digest(index), coco.instances_per_category(index)
    split = split or index.split.split
    return LoadedSplit(split, digest, counts, "instances", None, coco_source(index.split), lambda: coco_to_hf(index),
                       index=index, ignored=index.ignored, report=coco.validation_report(index),
                       profile=coco_profile(index, digest, counts), list_images=lambda: index_images(index, split))


def coco_source(split: CocoSplit) -> SourceRef:
    """Where a COCO split lives: its folder, annotation file and images folder; for a split streamed from an
    object store, their ``s3://`` locations (its kind reloads it from there)."""
    if is_object_uri(split.images_dir):
        uri = split.images_dir.rpartition("/")[0]
        return SourceRef(SOURCE_TYPE, {"uri": uri, "annotation_file": f"{uri}/annotations/{split.annotation_file.name}",
                                       "images_dir": split.images_dir, "name": split.name})
    annotation = split.annotation_file.resolve()
    return SourceRef(SOURCE_TYPE, {"uri": annotation.parent.parent.as_uri(), "annotation_file": str(annotation),
                                   "images_dir": str(split.images_dir.resolve()), "name": split.name})


def index_images(index: coco.CocoIndex, split: str) -> list[SplitImage]:
    """A COCO index's images for the leakage check, each with its canonical annotations."""
    return [SplitImage(f"{index.split.name}/{image['file_name']}", str(index.image_path(image)), split,
                       annotations=coco.canonical_annotations(index, image)) for image in index.images]


def coco_profile(index: coco.CocoIndex, digest: str, counts: dict) -> dict:
    """The Datasets-panel summary of a COCO split (sizes from the image pass, geometry from the annotations)."""
    return image_profile((i["width"] for i in index.images), (i["height"] for i in index.images),
                         (index.facts[i["id"]].size for i in index.images if i["id"] in index.facts), counts, digest,
                         count_key="instances_per_category")
