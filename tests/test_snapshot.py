"""Dataset files stored once per tracking server (image_lineage.tracking.snapshots) and deterministic archives."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import uuid

import mlflow
from helpers import SMALL_DETECTOR, artifact_paths, build_unique_versions

from entrypoints import compare as compare_cli
from image_lineage.core.names import TAG_SNAPSHOT, TAG_SNAPSHOT_DIGEST, TAG_SNAPSHOT_SHARED, TAG_SNAPSHOT_URI, TAG_STORE_PACKS
from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.flows.hf_log import HfRequest, log_hf_dataset
from image_lineage.tracking.downloads import download_version


def log(data_dir, experiment, **kwargs):
    return log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version="v2", experiment_name=experiment,
                                                   quality_check="off", **kwargs))


def test_second_experiment_links_to_the_stored_files(catsdogs_dir, tmp_path, server_uri):
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    first = log(data, f"snap_a_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)  # the store holds the rest
    second = log(data, f"snap_b_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)
    holder, linked = mlflow.get_run(first.run_id), mlflow.get_run(second.run_id)
    assert first.snapshot_run_id is None and second.snapshot_run_id == first.run_id
    assert holder.data.tags[TAG_SNAPSHOT_DIGEST] == first.digest and holder.data.tags[TAG_SNAPSHOT_SHARED] == "true"
    assert linked.data.tags[TAG_SNAPSHOT] == first.run_id
    assert linked.data.tags[TAG_SNAPSHOT_URI] == holder.data.tags[TAG_SNAPSHOT_URI] == f"runs:/{first.run_id}/store.json.gz"
    assert linked.data.tags[TAG_STORE_PACKS] == holder.data.tags[TAG_STORE_PACKS]  # gc keeps them while it is active
    source = json.loads(linked.inputs.dataset_inputs[0].dataset.source)
    assert source["snapshot_uri"] == f"runs:/{first.run_id}/store.json.gz"
    assert "store.json.gz" in artifact_paths(first.run_id)
    # another experiment's run keeps its evidence (capped samples, manifest, chart, check report); only the
    # store map is linked
    own = artifact_paths(second.run_id)
    assert "store.json.gz" not in own
    assert {"manifest.json", "class_counts.png"} <= set(own) and any(p.startswith("images/samples_cat") for p in own)
    assert {p.split("/")[1] for p in own if p.startswith("samples/")} == {"cat", "dog"}
    assert len([p for p in own if p.startswith("samples/")]) == 4  # two per class
    # the linked run's reports are its own (another data folder: other paths in its diff and ignored lists)
    assert linked.data.metrics["total_images"] == holder.data.metrics["total_images"]

    # the files, downloaded through the link, are checked against their sha256
    files = download_version(second.run_id, tmp_path / "download")
    for record in second.manifest.records:
        assert hashlib.sha256((files / record.path).read_bytes()).hexdigest() == record.sha256


def test_copy_uploads_anyway_and_holds_its_own(catsdogs_dir, tmp_path, server_uri):
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    first = log(data, f"snap_a_{uuid.uuid4().hex[:8]}")
    copied = log(data, f"snap_c_{uuid.uuid4().hex[:8]}", snapshot="copy")
    run = mlflow.get_run(copied.run_id)
    assert copied.snapshot_run_id is None and TAG_SNAPSHOT not in run.data.tags
    assert run.data.tags[TAG_SNAPSHOT_DIGEST] == first.digest
    assert any(p.startswith("samples/") for p in artifact_paths(copied.run_id))


def test_deleted_snapshot_run_is_flagged_and_the_next_log_uploads_again(catsdogs_dir, tmp_path, server_uri, capsys):
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    experiment_b = f"snap_b_{uuid.uuid4().hex[:8]}"
    first = log(data, f"snap_a_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)  # a store map to link to
    linked = log(data, experiment_b, max_samples_per_class=2)
    assert linked.snapshot_run_id == first.run_id
    mlflow.MlflowClient().delete_run(first.run_id)

    assert compare_cli.main(["--experiment", experiment_b, "--output-dir", str(tmp_path / "out")]) == 0
    assert f"MISSING: run {first.run_id} deleted" in capsys.readouterr().out

    again = log(data, f"snap_d_{uuid.uuid4().hex[:8]}")
    assert again.snapshot_run_id is None  # a deleted run is never a holder: the files are uploaded anew
    assert any(p.startswith("samples/") for p in artifact_paths(again.run_id))


def test_hf_run_links_to_the_folder_runs_files(catsdogs_dir, tmp_path, server_uri):
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    folder_run = log(data, f"snap_a_{uuid.uuid4().hex[:8]}")
    run_id, _ = log_hf_dataset(HfRequest(source=str(data / "v2"), quality_check="off",
                                         experiment_name=f"snap_hf_{uuid.uuid4().hex[:8]}"))
    assert mlflow.get_run(run_id).data.tags[TAG_SNAPSHOT] == folder_run.run_id


def test_coco_finetune_runs_store_the_images_once(coco_tiny_dir, tmp_path, server_uri):
    data = tmp_path / "coco"
    shutil.copytree(coco_tiny_dir, data)
    annotations = data / "annotations/instances_train2017.json"
    coco = json.loads(annotations.read_text())
    coco["annotations"][0]["bbox"][0] += random.SystemRandom().random()  # a digest of this test's own
    annotations.write_text(json.dumps(coco))
    experiment = f"snap_det_{uuid.uuid4().hex[:8]}"
    request = dict(data_dir=str(data), experiment_name=experiment, register_as=f"det_{experiment}", epochs=0,
                   quality_check="off", image_artifacts_max=10, **{**SMALL_DETECTOR, "max_images": 0})
    first = run_finetune(FinetuneRequest(**request))
    second = run_finetune(FinetuneRequest(**request))
    other = run_finetune(FinetuneRequest(**{**request, "experiment_name": f"{experiment}_other"}))
    holder = mlflow.get_run(first.run_id)
    assert holder.data.tags[TAG_SNAPSHOT_URI] == f"runs:/{first.run_id}/coco"
    held = artifact_paths(first.run_id)  # images and annotation files are in the content store's packs
    assert {"coco/train/store.json.gz", "coco/validation/store.json.gz"} <= set(held)
    assert not [p for p in held if "/images/" in p or p.endswith("2017.json")]
    for run_id in (second.run_id, other.run_id):
        run = mlflow.get_run(run_id)
        assert run.data.tags[TAG_SNAPSHOT] == first.run_id
        assert run.data.tags[TAG_STORE_PACKS] == holder.data.tags[TAG_STORE_PACKS]
        paths = artifact_paths(run_id)
        assert not [p for p in paths if p.endswith(".gz") or "/images/" in p or p.endswith("2017.json")]
        assert "coco/validation/validation_report.json" in paths  # what is new to the run: its reports
        assert not [p for p in paths if "/previews/" in p]  # drawn from the data: stored with it, once
    assert any(p.startswith("coco/train/previews/") and p.endswith(".jpg") for p in artifact_paths(first.run_id))


def test_homework_runs_keep_their_samples_when_another_experiment_holds_the_files(catsdogs_dir, tmp_path, server_uri):
    """The homework against a server that already holds the demo's runs of the same folder: each version run
    still holds its samples/<class>/ images, manifest and chart (before: "No Artifacts Recorded")."""
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    demo = log(data, f"demo_{uuid.uuid4().hex[:8]}")  # every class within max_samples_per_class: no archive
    homework = log(data, f"homework_{uuid.uuid4().hex[:8]}")
    own = artifact_paths(homework.run_id)
    assert homework.snapshot_run_id is None and {"manifest.json", "class_counts.png"} <= set(own)
    assert sorted(p for p in own if p.startswith("samples/")) == sorted(p for p in artifact_paths(demo.run_id)
                                                                         if p.startswith("samples/"))


def test_a_holder_whose_files_this_client_cannot_read_is_not_linked(catsdogs_dir, tmp_path, server_uri, caplog):
    """A run logged with artifacts on a local disk this client cannot see (``make demo``'s ./mlruns in a clone
    since removed, or on another machine) is passed over: the next run stores its own copy."""
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    client = mlflow.MlflowClient()
    elsewhere = tmp_path / "clone" / "mlruns"
    local = client.create_experiment(f"local_{uuid.uuid4().hex[:8]}", artifact_location=elsewhere.as_uri())
    first = log(data, client.get_experiment(local).name, max_samples_per_class=2)
    assert mlflow.get_run(first.run_id).data.tags[TAG_SNAPSHOT_DIGEST] == first.digest
    shutil.rmtree(tmp_path / "clone")  # the clone is gone: its runs stay in the tracking store, files gone
    second = log(data, f"snap_e_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)
    assert second.snapshot_run_id is None and "store.json.gz" in artifact_paths(second.run_id)
    assert "cannot read them" in caplog.text
    files = download_version(second.run_id, tmp_path / "download")  # what it links to can be downloaded
    assert sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()) == sorted(
        r.path for r in second.manifest.records)
