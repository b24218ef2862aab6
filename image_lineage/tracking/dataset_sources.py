"""MLflow dataset sources that say exactly where a dataset came from, made from the kinds' :class:`SourceRef`.

MLflow's ``LocalArtifactDatasetSource`` records a path only. A folder inside a git checkout is
better identified by the commit too, so a run's Datasets panel shows ``uri``, ``git_commit`` and
the path inside the repository, and whether the folder had uncommitted changes when it was logged.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

from image_lineage.core.errors import LineageError
from image_lineage.data.kinds import SourceRef, combined_digest, load_splits, reload_split
from image_lineage.data.object_store import Mirror, is_object_uri, mirror_prefix


class FolderDatasetSource(DatasetSource):
    """A local folder, with the git commit that holds it when it lies inside a checkout."""

    def __init__(self, uri: str, git_commit: str | None = None, path_in_repo: str | None = None, git_dirty: bool | None = None,
                 snapshot_uri: str | None = None, objects: list[dict] | str | None = None, digest: str | None = None):
        self.uri = uri
        self.git_commit = git_commit
        self.path_in_repo = path_in_repo
        self.git_dirty = git_dirty
        self.snapshot_uri = snapshot_uri  # runs:/<run>/<path>: the copy of the files in the tracking server
        self.objects = objects  # an s3:// uri: each object's key, ETag (and version id), or the artifact listing them
        self.digest = digest  # the content digest when logged (load() checks the folder still has it)

    @staticmethod
    def _get_source_type() -> str:
        return "folder"

    def load(self) -> str:
        """The local folder, checked to still exist (and, when the source records a content digest, to still
        hold that content); an s3:// prefix is mirrored (objects read only where the mirror is not current)
        and must hold the objects recorded, with the same ETags."""
        if self.uri.startswith("s3://"):
            return self.load_objects()
        path = Path(self.uri.removeprefix("file://"))
        if not path.is_dir():
            raise LineageError(
                f"dataset folder {path} is gone; check out git commit {self.git_commit} "
                f"and use {self.path_in_repo}" if self.git_commit else f"dataset folder {path} is gone"
            )
        if self.digest is not None:
            self.check_digest(str(path))
        return str(path)

    def check_digest(self, folder: str) -> None:
        """The folder's content digest now (through the image pass: unchanged files are not read) must be the
        one recorded; otherwise the data changed since it was logged."""
        now = combined_digest({s.split: s.digest for s in load_splits(folder)})
        if now != self.digest:
            raise LineageError(f"the data in {folder} changed since it was logged (content digest {self.digest[:12]} "
                               f"then, {now[:12]} now): check out git commit {self.git_commit} or restore the files.")

    def load_objects(self) -> str:
        mirror = mirror_prefix(self.uri)
        if isinstance(self.objects, list):
            now = {o.key: o.etag for o in mirror.objects}
            then = {o["key"]: o["etag"] for o in self.objects}
            if now != then:
                changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
                raise LineageError(f"{self.uri} changed since it was logged: {len(changed)} object(s) differ, "
                                   f"e.g. {', '.join(changed[:3])}.")
        return str(mirror.folder)

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False  # built explicitly with from_folder(), never guessed from a string

    @classmethod
    def _resolve(cls, raw_source: Any) -> "FolderDatasetSource":
        raise NotImplementedError("use FolderDatasetSource.from_folder()")

    def to_dict(self) -> dict[str, Any]:
        info = {"uri": self.uri}
        if self.git_commit:
            info.update(git_commit=self.git_commit, path_in_repo=self.path_in_repo, git_dirty=self.git_dirty)
        if self.snapshot_uri:
            info["snapshot_uri"] = self.snapshot_uri
        if self.objects:
            info["objects"] = self.objects
        if self.digest:
            info["digest"] = self.digest
        return info

    @classmethod
    def from_dict(cls, source_dict: dict[str, Any]) -> "FolderDatasetSource":
        return cls(**source_dict)

    @classmethod
    def from_folder(cls, folder: str | Path, snapshot_uri: str | None = None, digest: str | None = None) -> "FolderDatasetSource":
        folder = Path(folder).resolve()
        commit, repo_root, dirty = git_state(folder)
        path_in_repo = folder.relative_to(repo_root).as_posix() if repo_root else None
        return cls(folder.as_uri(), commit, path_in_repo, dirty, snapshot_uri, digest=digest)


def git_state(folder: Path) -> tuple[str | None, Path | None, bool | None]:
    """(HEAD commit, repository root, folder has uncommitted changes) or Nones outside a checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None, None, None
    root = git("rev-parse", "--show-toplevel")
    status = git("status", "--porcelain", "--", ".")
    return commit, Path(root) if root else None, bool(status)


class CocoDatasetSource(FolderDatasetSource):
    """A COCO split: its annotation file and images folder (with the git commit, as for folders)."""

    def __init__(self, uri: str, annotation_file: str, images_dir: str, name: str, **git):
        super().__init__(uri, **git)  # git state, snapshot_uri, digest
        self.annotation_file = annotation_file
        self.images_dir = images_dir
        self.name = name

    @staticmethod
    def _get_source_type() -> str:
        return "coco"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "annotation_file": self.annotation_file, "images_dir": self.images_dir, "name": self.name}

    def check_digest(self, folder: str) -> None:
        """The split's content digest now (images and annotations) must be the one recorded."""
        now = reload_split(self._get_source_type(), self.to_dict()).digest
        if now != self.digest:
            raise LineageError(f"COCO split {self.name} in {folder} changed since it was logged (content digest "
                               f"{self.digest[:12]} then, {now[:12]} now): restore the annotation file and images.")


def mlflow_source(ref: SourceRef, snapshot_uri: str | None = None) -> DatasetSource:
    """The MLflow ``DatasetSource`` of a split's :class:`SourceRef` (a folder or COCO split with its git commit)."""
    if ref.type == "hugging_face":
        return HuggingFaceDatasetSource(**ref.fields)
    if ref.type == "coco":
        fields = dict(ref.fields)
        if is_object_uri(fields["uri"]):  # streamed from an object store: no folder, no git
            return CocoDatasetSource(fields["uri"], fields["annotation_file"], fields["images_dir"], fields["name"],
                                     snapshot_uri=snapshot_uri)
        folder = FolderDatasetSource.from_folder(Path(fields["annotation_file"]).parent.parent, snapshot_uri)
        git = {k: v for k, v in folder.to_dict().items() if k != "uri"}
        return CocoDatasetSource(folder.uri, fields["annotation_file"], fields["images_dir"], fields["name"], **git)
    if ref.type == "folder":
        return FolderDatasetSource.from_folder(Path(ref.fields["uri"].removeprefix("file://")), snapshot_uri)
    return kind_source_class(ref.type)(**ref.fields)


class KindDatasetSource(DatasetSource):
    """The source of a kind registered beside the project's own (a ``SourceRef`` of its own type): its fields
    as they are, reloaded by that kind (:func:`image_lineage.data.kinds.reload_split`)."""

    def __init__(self, **fields):
        self.fields = fields

    @staticmethod
    def _get_source_type() -> str:
        raise NotImplementedError  # each type's class (kind_source_class) says its own

    def load(self):
        from image_lineage.data.kinds import reload_split

        return reload_split(self._get_source_type(), self.fields).dataset

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any):
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return dict(self.fields)

    @classmethod
    def from_dict(cls, source_dict: dict[str, Any]):
        return cls(**source_dict)


@functools.lru_cache(maxsize=None)
def kind_source_class(source_type: str) -> type[KindDatasetSource]:
    """The :class:`KindDatasetSource` class of one source type (made once per type: MLflow reads a source's
    type from its class)."""
    return type(f"KindDatasetSource_{source_type}", (KindDatasetSource,),
                {"_get_source_type": staticmethod(lambda: source_type)})


def folder_source(folder: str | Path, remote: Mirror | None, snapshot_uri: str | None) -> FolderDatasetSource:
    """Where a version came from: the folder and its git commit, or the s3:// prefix and its objects'
    ETags (inline up to ``INLINE_OBJECTS``, else in the run's ``s3_objects.json``); and where the server
    stores its files."""
    if remote is None:
        return FolderDatasetSource.from_folder(folder, snapshot_uri)
    return FolderDatasetSource(remote.uri, snapshot_uri=snapshot_uri, objects=remote.source_objects())
