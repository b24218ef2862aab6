"""A new dataset source kind is one class and one ``register`` call: a toy kind, defined here, goes through
every flow that reads data (a folder version, the Hugging Face form, the leakage check) and is found and
reloaded again, with no other change to the project."""

import csv
import json
from pathlib import Path

import mlflow
import pytest
from helpers import build_tree

from image_lineage.core.errors import DatasetError
from image_lineage.core.names import TAG_DIGEST, TAG_SOURCE_KIND
from image_lineage.data.folders import manifest_from_files
from image_lineage.data.kinds import (
    KINDS, LoadOptions, SourceKind, SourceRef, kind_of, load_whole, manifest_split, register, unregister,
)
from image_lineage.flows.check import CheckRequest, check_dataset
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.flows.hf_log import HfRequest, log_hf_dataset
from image_lineage.tracking.lineage import find_runs_by_digest, load_logged_dataset

PREFIX = "list:"


class ImageList(SourceKind):
    """``list:<file.csv>``: a CSV of ``path,label`` rows (paths relative to the CSV), one train split; a
    ``list:<folder>`` of such files holds versions (``v1.csv``, ``v2.csv``)."""

    name = "image_list"

    def detect(self, source):
        return source.startswith(PREFIX)

    def available(self, source):
        return {"train": Path(source[len(PREFIX):])}

    def load_split(self, split, handle, options):
        with open(handle, newline="") as file:
            rows = list(csv.DictReader(file))
        candidates = [(row["path"], row["label"], str(handle.parent / row["path"])) for row in rows]
        manifest = manifest_from_files(handle.parent, candidates, sorted({row["label"] for row in rows}), [],
                                       options.on_bad_image, image_check=options.image_check, perceptual=options.perceptual)
        return manifest_split(split, manifest, SourceRef("image_list", {"uri": str(handle)}))

    def reload(self, source_type, source, options):
        return self.load_split("train", Path(source["uri"]), options) if source_type == "image_list" else None

    def versions(self, source):
        return [p.stem for p in Path(source[len(PREFIX):]).glob("*.csv")]

    def version_source(self, source, version):
        return f"{source}/{version}.csv"


@pytest.fixture
def image_list_kind():
    kind = register(ImageList())
    yield kind
    unregister(kind)


def write_list(tmp_path, name="pool.csv", cats=2, dogs=1, copy_of_a_cat=False) -> Path:
    root = build_tree(tmp_path, {"pool": {"cat": cats, "dog": dogs}})
    listing = tmp_path / name
    with open(listing, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label"])
        for image in sorted((root / "pool").rglob("*.png")):
            writer.writerow([image.relative_to(tmp_path).as_posix(), image.parent.name])
        if copy_of_a_cat:  # the same file under another label: a duplicate with a label conflict
            writer.writerow(["pool/cat/cat_01.png", "dog"])
    return listing


def test_a_kind_defined_here_logs_and_reloads_through_log_hf_dataset(image_list_kind, tmp_path, experiment_name, sqlite_uri):
    listing = write_list(tmp_path)
    source = f"{PREFIX}{listing}"
    assert kind_of(source) is image_list_kind
    run_id, (split,) = log_hf_dataset(HfRequest(source=source, name="pets", experiment_name=experiment_name))
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[TAG_SOURCE_KIND] == "image_list"
    assert run.data.tags[TAG_DIGEST] == split.digest
    assert {"train/num_rows": 3, "train/rows_cat": 2, "train/rows_dog": 1}.items() <= run.data.metrics.items()
    assert run.data.tags["quality.status"] in ("clean", "duplicates")  # its images are files: the check read them
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.source_type == "image_list" and json.loads(dataset_input.dataset.source) == {"uri": str(listing)}
    assert [r.info.run_id for r in find_runs_by_digest(split.digest, [experiment_name])] == [run_id]
    assert load_logged_dataset(run_id)["label"] == split.dataset["label"]


def test_the_same_kind_logs_versions_through_log_folder_dataset(image_list_kind, tmp_path, experiment_name, sqlite_uri):
    folder = tmp_path / "lists"
    write_list(folder, "v1.csv", cats=2, dogs=0)
    write_list(folder, "v2.csv", cats=2, dogs=1)
    for version in ("v1", "v2"):
        logged = log_folder_version(FolderVersionRequest(data_dir=f"{PREFIX}{folder}", version=version,
                                                         experiment_name=experiment_name))
    run = mlflow.get_run(logged.run_id)
    assert run.info.status == "FINISHED" and run.data.params["dataset_version"] == "2.0.0"
    assert run.data.metrics["total_images"] == 3 and run.data.metrics["class_dog_count"] == 1
    assert run.data.tags["dataset.diff_summary"] == "v1->v2: +1 -0 ~0 relabelled 0"
    assert logged.digest == run.data.tags[TAG_DIGEST] == load_whole(f"{PREFIX}{folder}/v2.csv", "v2", LoadOptions()).digest


def test_the_same_kind_is_checked_through_check_dataset(image_list_kind, tmp_path, experiment_name, sqlite_uri):
    listing = write_list(tmp_path, copy_of_a_cat=True)
    run_id, report = check_dataset(CheckRequest(source=f"{PREFIX}{listing}", experiment_name=experiment_name))
    (exact,) = report.pairs[report.pairs["kind"] == "exact_duplicate"].itertuples()
    assert report.status == "duplicates" and exact.label_conflict and {exact.label_a, exact.label_b} == {"cat", "dog"}
    assert mlflow.get_run(run_id).data.tags["quality.status"] == "duplicates"


def test_unknown_source_lists_the_registered_kinds(image_list_kind):
    with pytest.raises(DatasetError, match="kinds known: s3, dbfs, hub, coco, folder, image_list"):
        kind_of("nowhere:at-all")
    assert [k.name for k in KINDS] == ["s3", "dbfs", "hub", "coco", "folder", "image_list"]


def test_a_dbfs_location_is_read_where_databricks_mounts_it(catsdogs_dir, bundled_coco, tmp_path, monkeypatch,
                                                            experiment_name, sqlite_uri):
    """dbfs:/ sources (a folder of versions, a COCO folder) read as the folders they are on the mount, by those
    folders' own kinds: the digests of the same folders logged by path."""
    import shutil

    from helpers import build_real_versions

    mount = tmp_path / "dbfs"
    monkeypatch.setenv("IMAGE_LINEAGE_DBFS_MOUNT", str(mount))
    build_real_versions(catsdogs_dir, mount / "data" / "pets")
    shutil.copytree(bundled_coco, mount / "data" / "coco")
    by_uri = log_folder_version(FolderVersionRequest(data_dir="dbfs:/data/pets", version="v2",
                                                     experiment_name=experiment_name, run_name="by_uri"))
    by_path = log_folder_version(FolderVersionRequest(data_dir=str(mount / "data" / "pets"), version="v2",
                                                      experiment_name=f"{experiment_name}_path", run_name="by_path"))
    assert by_uri.digest == by_path.digest
    assert json.loads(mlflow.artifacts.load_text(f"runs:/{by_uri.run_id}/diff.json")) == json.loads(
        mlflow.artifacts.load_text(f"runs:/{by_path.run_id}/diff.json"))  # v1, the diff base, found on the mount too
    checked = {source: mlflow.get_run(check_dataset(CheckRequest(source=source, experiment_name=experiment_name))[0])
               for source in ("dbfs:/data/coco", str(bundled_coco))}
    assert checked["dbfs:/data/coco"].data.tags[TAG_DIGEST] == checked[str(bundled_coco)].data.tags[TAG_DIGEST]
