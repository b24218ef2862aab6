"""Dataset source kinds: one module each, registered here in the order they are asked.

See :mod:`image_lineage.data.kinds.base` for what a kind does and how to add one.
"""

from image_lineage.data.kinds.base import (
    SPLIT_CHOICES, LoadedSplit, LoadOptions, SourceKind, SourceRef, SplitImage, label_counts, manifest_split,
    resolve_targets,
)
from image_lineage.data.kinds.coco_folder import CocoFolder
from image_lineage.data.kinds.dbfs import DbfsLocation
from image_lineage.data.kinds.hub import HubDataset
from image_lineage.data.kinds.image_folder import ImageFolder
from image_lineage.data.kinds.registry import (
    KINDS, combined_digest, dataset_name_of, kind_of, load_splits, load_whole, passed_over_folders, register,
    reload_split, unregister,
)
from image_lineage.data.kinds.s3_prefix import ObjectStorePrefix

register(ObjectStorePrefix())  # s3://bucket/prefix: streamed (or mirrored where files must be on disk)
register(DbfsLocation())  # dbfs:/path: read where Databricks mounts it, by the kind of the folder there
register(HubDataset())
register(CocoFolder())
register(ImageFolder())  # last: any other folder is an image folder

__all__ = [
    "KINDS", "SPLIT_CHOICES", "LoadedSplit", "LoadOptions", "SourceKind", "SourceRef", "SplitImage", "combined_digest",
    "dataset_name_of",
    "kind_of", "label_counts", "load_splits", "load_whole", "manifest_split", "passed_over_folders", "register",
    "reload_split", "resolve_targets", "unregister",
]
