"""``dbfs:/path`` sources: Databricks' file system, which Databricks mounts at ``/dbfs`` on the driver and on
every executor. The location is read as the folder it is there (an image folder, a COCO folder, a folder of
versions), by that folder's own kind, so its digest is the folder's; ``engine=spark`` reads the same paths on
the executors. The mount is ``$IMAGE_LINEAGE_DBFS_MOUNT`` (:func:`image_lineage.core.config.dbfs_mount`)."""

from __future__ import annotations

from dataclasses import dataclass

from image_lineage.core import config
from image_lineage.core.errors import LineageError
from image_lineage.data.kinds.base import LoadedSplit, LoadOptions, SourceKind
from image_lineage.data.kinds.registry import KINDS

SCHEME = "dbfs:/"


@dataclass(frozen=True)
class MountedSplit:
    """A split of the mounted folder, with the kind that reads it."""

    kind: SourceKind
    inner: object

    @property
    def name(self) -> str:
        return getattr(self.inner, "name", "")


class DbfsLocation(SourceKind):
    name = "dbfs"

    def detect(self, source: str) -> bool:
        return str(source).startswith(SCHEME)

    def available(self, source: str) -> dict[str, MountedSplit]:
        kind, path = mounted(source)
        return {split: MountedSplit(kind, handle) for split, handle in kind.available(path).items()}

    def splits(self, source: str, wanted: str) -> dict[str, MountedSplit]:
        kind, path = mounted(source)
        return {split: MountedSplit(kind, handle) for split, handle in kind.splits(path, wanted).items()}

    def passed_over(self, source: str) -> list[dict]:
        kind, path = mounted(source)
        return kind.passed_over(path)

    def whole(self, source: str) -> MountedSplit:
        kind, path = mounted(source)
        return MountedSplit(kind, kind.whole(path))

    def load_split(self, split: str, handle: MountedSplit, options: LoadOptions) -> LoadedSplit:
        return handle.kind.load_split(split, handle.inner, options)

    def versions(self, source: str) -> list[str]:
        kind, path = mounted(source)
        return kind.versions(path)

    def class_names(self, source: str) -> list[str]:
        kind, path = mounted(source)
        return kind.class_names(path)


def mount_path(source: str) -> str:
    """``dbfs:/data/pets`` -> ``/dbfs/data/pets``."""
    return f"{config.dbfs_mount().rstrip('/')}/{str(source)[len(SCHEME):].lstrip('/')}"


def mounted(source: str) -> tuple[SourceKind, str]:
    """The kind of the folder ``source`` is on the mount, and its path there."""
    path = mount_path(source)
    kind = next((kind for kind in KINDS if not isinstance(kind, DbfsLocation) and kind.detect(path)), None)
    if kind is None:
        raise LineageError(f"source {source!r}: nothing at {path}, where Databricks mounts DBFS on its nodes. On "
                           f"Databricks, check the path; elsewhere give the folder itself (or set "
                           f"{config.DBFS_MOUNT} to where DBFS is mounted).")
    return kind, path
