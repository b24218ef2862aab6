"""Dataset source kinds: one module each, registered here in the order they are asked.

See :mod:`image_lineage.source_kinds.base` for what a kind does and how to add one.
"""

from image_lineage.source_kinds.base import (  # noqa: F401  (the package's API)
    KINDS, SPLIT_CHOICES, LoadedSplit, LoadOptions, SourceKind, kind_of, label_counts, pick_splits, register, reload_split,
    resolve_targets, unregister,
)
from image_lineage.source_kinds.coco_folder import CocoFolder
from image_lineage.source_kinds.hub import HubDataset
from image_lineage.source_kinds.image_folder import ImageFolder
from image_lineage.source_kinds.object_store import ObjectStorePrefix

register(ObjectStorePrefix())  # s3://bucket/prefix: mirrored, then read as the folder it holds
register(HubDataset())
register(CocoFolder())
register(ImageFolder())  # last: any other folder is an image folder
