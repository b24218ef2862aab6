"""Dataset versions: a folder (or an object-store prefix) of version folders, each one dataset::

    image_dataset/v1/cat/cat_01.jpg
    image_dataset/v2/cat/cat_01.jpg
    image_dataset/v2/dog/dog_01.jpg

Which versions there are, and where each lives, is the source kind's to say (a local folder lists its
sub-folders, an ``s3://`` prefix its sub-prefixes); a version is then read whole, by the kind of its own
source, as one split named after it. Logging one version judges that version only: an earlier folder that
is no dataset version (``pool/`` of loose files, an unsafe class name, ...) is listed, not fatal.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from image_lineage.core.errors import LineageError
from image_lineage.data.diff import diff_manifests
from image_lineage.data.kinds import LoadedSplit, LoadOptions, kind_of, load_whole

LOGGER = logging.getLogger(__name__)


def natural_key(name: str) -> list:
    """Sort key that puts v2 before v10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def derive_dataset_version(version: str) -> str:
    """``v1`` -> ``1.0.0``, ``v2.1`` -> ``2.1.0``, ``v01`` -> ``1.0.0`` (semver numbers have no leading zeros);
    anything else must be given explicitly."""
    match = re.fullmatch(r"[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        raise LineageError(
            f"cannot derive a dataset_version from version folder {version!r}: pass -P dataset_semver=<x.y.z>."
        )
    return ".".join(str(int(part or 0)) for part in match.groups())


@dataclass
class VersionRead:
    """One version read whole, its diff against the nearest earlier version, and every class of every version."""

    version: str
    loaded: LoadedSplit
    diff: dict
    all_classes: list[str]


def list_versions(data_dir: str) -> list[str]:
    """The versions under ``data_dir``, in natural order (v2 before v10)."""
    try:
        holder = kind_of(data_dir)
    except LineageError:
        raise LineageError(
            f"data_dir {str(data_dir)!r} does not exist or is not a folder: pass -P data_dir=<folder "
            f"holding version folders such as v1/ and v2/>."
        ) from None
    return sorted(holder.versions(data_dir), key=natural_key)


def version_source(data_dir: str, version: str) -> str:
    """Where one version lives (a folder path, an ``s3://`` prefix, ...), as its holder's kind says."""
    return kind_of(data_dir).version_source(data_dir, version)


def read_version(data_dir: str, version: str, options: LoadOptions) -> VersionRead:
    """Version ``version`` of ``data_dir`` through the image pass, with its diff and the classes of all versions."""
    names = list_versions(data_dir)
    if version not in names:
        raise LineageError(f"version {version!r} not found in data_dir {str(data_dir)!r}; versions found: "
                           f"{', '.join(names) or 'none'}.")
    loaded = load_whole(version_source(data_dir, version), version, options)
    if loaded.manifest is None:
        raise LineageError(f"{version_source(data_dir, version)} is a {kind_of(data_dir).name} dataset, not a folder "
                           f"of class folders: log it with log_hf_dataset.")
    previous, previous_name, skipped = read_previous(data_dir, names[: names.index(version)])
    diff = diff_manifests(previous, loaded.manifest, previous_name, version)
    if skipped:
        diff["skipped_versions"] = skipped  # in diff.json: why the diff base is not the folder just before
    holder = kind_of(data_dir)
    classes = sorted({name for v in names for name in holder.class_names(holder.version_source(data_dir, v))})
    return VersionRead(version, loaded, diff, classes)


def read_previous(data_dir: str, earlier: list[str]):
    """(the manifest of the nearest earlier folder that is a dataset version (v1 for v2), its name, the
    folders passed over on the way, each ``{"version", "reason"}``)."""
    skipped = []
    for name in reversed(earlier):
        try:
            loaded = load_whole(version_source(data_dir, name), name, LoadOptions(on_bad_image="skip"))
            return loaded.manifest, name, skipped
        except LineageError as exc:
            LOGGER.warning("diff base: folder %s is not a dataset version, passed over: %s", name, exc)
            skipped.append({"version": name, "reason": str(exc)})
    return None, None, skipped


def versions_digest(data_dir: str, options: LoadOptions) -> str:
    """One digest for every version of ``data_dir`` (the folders that are versions; the others passed over,
    as logging a version passes them over)."""
    digests = []
    for name in list_versions(data_dir):
        try:
            digests.append(load_whole(version_source(data_dir, name), name, options).digest)
        except LineageError as exc:
            LOGGER.warning("folder %s of %s is not a dataset version, passed over: %s", name, data_dir, exc)
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def holds_versions(folder: str | Path) -> bool:
    """A local folder of version folders (``image_dataset/`` holding ``v1/cat/``): some sub-folder holds folders."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / "annotations").is_dir():
        return False
    return any(child.is_dir() and any(grandchild.is_dir() for grandchild in child.iterdir()) for child in folder.iterdir())
