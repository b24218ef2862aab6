import json

import mlflow
import pytest
from helpers import artifact_paths, build_real_versions, build_tree, dataset_metrics

from image_lineage.core.errors import DatasetError
from image_lineage.core.names import TAG_DIGEST, TAG_SNAPSHOT
from image_lineage.data.folders import scan_version
from image_lineage.data.versions import derive_dataset_version
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking.downloads import download_version


def log(data_dir, version, experiment_name, **kwargs):
    return log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version=version, experiment_name=experiment_name, **kwargs))


def test_derive_dataset_version():
    assert derive_dataset_version("v1") == "1.0.0"
    assert derive_dataset_version("v2.1") == "2.1.0"
    assert derive_dataset_version("v01") == "1.0.0" and derive_dataset_version("v02.010") == "2.10.0"  # semver: no leading zeros
    with pytest.raises(DatasetError, match="dataset_semver"):
        derive_dataset_version("latest")


def test_homework_values_for_bundled_sample(bundled_images, experiment_name, any_store_uri):
    # snapshot=copy: other tests of the shared server logged these images already; this run uploads its own
    first = log(bundled_images, "v1", experiment_name, snapshot="copy")
    second = log(bundled_images, "v2", experiment_name, snapshot="copy")
    client = mlflow.MlflowClient()
    run1, run2 = client.get_run(first.run_id), client.get_run(second.run_id)

    assert (run1.info.run_name, run2.info.run_name) == ("image_v1", "image_v2")
    assert run1.info.status == run2.info.status == "FINISHED"
    assert run1.data.params == {
        "dataset_version": "1.0.0", "dataset_name": "cat_dog_dataset", "num_classes": "1", "class_names": '["cat"]',
    }
    assert run2.data.params == {
        "dataset_version": "2.0.0", "dataset_name": "cat_dog_dataset", "num_classes": "2", "class_names": '["cat", "dog"]',
    }
    assert dataset_metrics(run1) == {"total_images": 2, "class_cat_count": 2, "class_dog_count": 0}
    assert dataset_metrics(run2) == {"total_images": 3, "class_cat_count": 1, "class_dog_count": 2}

    paths = artifact_paths(second.run_id)
    assert [p for p in paths if not p.startswith("images/")] == [
        "class_counts.png", "croissant.json", "diff.json", "manifest.json", "quality/pairs.csv", "quality/report.html",
        "samples/cat/cat_01.jpg", "samples/dog/dog_01.jpg", "samples/dog/dog_02.jpg",
    ]
    # the Datasets panel's profile: counts, geometry, bytes, full digest, quality
    (profiled,) = run2.inputs.dataset_inputs
    profile = json.loads(profiled.dataset.profile)
    assert profile["num_images"] == 3 and profile["class_counts"] == {"cat": 1, "dog": 2}
    assert set(profile["image_width"]) == {"min", "median", "max"} and profile["digest"] == second.digest
    assert profile["bytes"] == sum(r.size for r in second.manifest.records) and profile["quality_status"] == "duplicates"
    # one sample grid per class, as MLflow images (the run page shows them)
    assert {p.split("+")[0] for p in paths if p.startswith("images/")} == {"images/samples_cat", "images/samples_dog"}
    diff = json.loads(mlflow.artifacts.load_text(f"runs:/{second.run_id}/diff.json"))
    assert diff["added"] == ["dog/dog_01.jpg", "dog/dog_02.jpg"] and diff["removed"] == ["cat/cat_02.jpg"]
    png = mlflow.artifacts.download_artifacts(f"runs:/{second.run_id}/class_counts.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    assert run2.data.tags[TAG_DIGEST] == second.digest
    (dataset_input,) = run2.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "cat_dog_dataset"
    assert dataset.digest == second.digest[:32]
    source = json.loads(dataset.source)
    assert dataset.source_type == "folder" and source["uri"].endswith("image_dataset/v2")
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"


def test_source_records_git_commit_inside_a_checkout(tmp_path, experiment_name, sqlite_uri):
    import subprocess

    build_tree(tmp_path / "repo" / "images", {"v1": {"cat": 1}})
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "data"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    logged = log(tmp_path / "repo" / "images", "v1", experiment_name)
    source = json.loads(mlflow.get_run(logged.run_id).inputs.dataset_inputs[0].dataset.source)
    assert source["git_commit"] == commit
    assert source["path_in_repo"] == "images/v1" and source["git_dirty"] is False


def test_relog_is_idempotent(bundled_images, experiment_name, server_uri):
    first = log(bundled_images, "v2", experiment_name, snapshot="copy")  # holds the files in this experiment
    again = log(bundled_images, "v2", experiment_name)
    third = log(bundled_images, "v2", experiment_name)
    assert first.snapshot_run_id is None
    assert again.snapshot_run_id == third.snapshot_run_id == first.run_id
    run = mlflow.get_run(again.run_id)
    assert run.data.tags[TAG_SNAPSHOT] == first.run_id
    assert run.data.metrics["total_images"] == 3
    assert run.inputs.dataset_inputs[0].dataset.digest == first.digest[:32]
    assert artifact_paths(again.run_id) == []  # nothing heavy uploaded again


def test_large_class_goes_into_the_content_store(catsdogs_dir, tmp_path, experiment_name, server_uri):
    root = build_real_versions(catsdogs_dir, tmp_path / "data")
    logged = log(root, "v2", experiment_name, max_samples_per_class=2)
    paths = artifact_paths(logged.run_id)
    assert [p for p in paths if p.startswith("samples/")] == [
        "samples/cat/" + name for name in sorted(p.name for p in (root / "v2/cat").iterdir())[:2]
    ] + ["samples/dog/" + name for name in sorted(p.name for p in (root / "v2/dog").iterdir())[:2]]
    assert "store.json.gz" in paths  # where each image is in the store's packs
    restored = download_version(logged.run_id, tmp_path / "restored")
    assert sorted(p.relative_to(restored).as_posix() for p in restored.rglob("*") if p.is_file()) == sorted(
        r.path for r in logged.manifest.records)
    run = mlflow.get_run(logged.run_id)
    assert dataset_metrics(run) == {"total_images": 9, "class_cat_count": 4, "class_dog_count": 5}


def test_a_first_log_leaves_its_files_cached(catsdogs_dir, tmp_path, experiment_name, server_uri, monkeypatch):
    """Staging the samples for upload must not touch them: a hard link changed each file's ctime, so the next
    step of ``main`` (and any later scan) missed the record cache and read every sample again."""
    root = build_real_versions(catsdogs_dir, tmp_path / "data")
    reads = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(reads))
    logged = log(root, "v2", experiment_name, snapshot="copy")  # uploads its samples
    assert any(p.startswith("samples/") for p in artifact_paths(logged.run_id))
    before = reads.read_text().count("\n")
    assert scan_version(root / "v2").digest == logged.digest
    assert reads.read_text().count("\n") == before  # every file answered by the cache


def test_real_photos_v1_v2(catsdogs_dir, tmp_path, experiment_name, server_uri):
    root = build_real_versions(catsdogs_dir, tmp_path / "data")
    first, second = log(root, "v1", experiment_name), log(root, "v2", experiment_name)
    assert dataset_metrics(mlflow.get_run(first.run_id)) == {"total_images": 6, "class_cat_count": 6, "class_dog_count": 0}
    assert len(second.diff["added"]) == 5 and len(second.diff["removed"]) == 2
    assert first.digest != second.digest


def test_bad_image_skip_is_listed_in_the_run(tmp_path, experiment_name, server_uri):
    root = build_tree(tmp_path, {"v1": {"cat": 2}})
    (root / "v1/cat/broken.jpg").write_bytes(b"")
    (root / "v1/cat/notes.txt").write_text("x")
    logged = log(root, "v1", experiment_name, on_bad_image="skip")
    run = mlflow.get_run(logged.run_id)
    assert run.data.metrics["total_images"] == 2
    assert run.data.tags["dataset.ignored_files"] == "2"
    ignored = json.loads(mlflow.artifacts.load_text(f"runs:/{logged.run_id}/ignored_files.json"))
    assert {item["path"] for item in ignored} == {"cat/broken.jpg", "cat/notes.txt"}


def test_bad_image_fail_leaves_no_finished_run(tmp_path, experiment_name, server_uri):
    root = build_tree(tmp_path, {"v1": {"cat": 2}})
    (root / "v1/cat/broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.jpg"):
        log(root, "v1", experiment_name)
    experiment = mlflow.get_experiment_by_name(experiment_name)
    runs = mlflow.search_runs([experiment.experiment_id]) if experiment else []
    assert len(runs) == 0 or set(runs["status"]) == {"FAILED"}


def test_failure_during_logging_leaves_run_failed(bundled_images, experiment_name, server_uri, monkeypatch):
    import image_lineage.tracking.snapshots as snapshots

    def broken_upload(_):
        raise ConnectionError("upload interrupted")

    monkeypatch.setattr(snapshots, "upload_folder", broken_upload)  # the store-or-link stage's upload
    with pytest.raises(ConnectionError):
        log(bundled_images, "v1", experiment_name, snapshot="copy")
    runs = mlflow.search_runs(experiment_names=[experiment_name])
    assert list(runs["status"]) == ["FAILED"]
    assert TAG_DIGEST not in runs.columns or runs[f"tags.{TAG_DIGEST}"].isna().all()


def test_manifest_schema_is_what_mlflow_infers(catsdogs_dir):
    """The dataset input's schema is given, not inferred (speed): it must be what MLflow infers."""
    import pandas as pd
    from mlflow.types.utils import _infer_schema

    from image_lineage.tracking.datasets import MANIFEST_SCHEMA
    from image_lineage.tracking.datasets import schema_hints_silenced

    table = pd.DataFrame([vars(r) for r in scan_version(catsdogs_dir).records])
    with schema_hints_silenced():
        assert _infer_schema(table) == MANIFEST_SCHEMA
