"""Dataset files stored once per tracking server (image_lineage.tracking.snapshots) and deterministic archives."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tarfile
import uuid

import mlflow
import pytest
from helpers import SMALL_DETECTOR, artifact_paths, build_unique_versions, write_image

from entrypoints import compare as compare_cli
from image_lineage.core.names import TAG_ARCHIVE_SHA256, TAG_SNAPSHOT, TAG_SNAPSHOT_DIGEST, TAG_SNAPSHOT_SHARED, TAG_SNAPSHOT_URI
from image_lineage.data.archive import write_archive
from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.flows.hf_log import HfRequest, log_hf_dataset
from image_lineage.tracking.snapshots import download_archive


def log(data_dir, experiment, **kwargs):
    return log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version="v2", experiment_name=experiment,
                                                   quality_check="off", **kwargs))


def test_second_experiment_links_to_the_stored_files(catsdogs_dir, tmp_path, server_uri):
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    first = log(data, f"snap_a_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)  # an archive holds the rest
    second = log(data, f"snap_b_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)
    holder, linked = mlflow.get_run(first.run_id), mlflow.get_run(second.run_id)
    assert first.snapshot_run_id is None and second.snapshot_run_id == first.run_id
    assert holder.data.tags[TAG_SNAPSHOT_DIGEST] == first.digest and holder.data.tags[TAG_SNAPSHOT_SHARED] == "true"
    assert linked.data.tags[TAG_SNAPSHOT] == first.run_id
    assert linked.data.tags[TAG_SNAPSHOT_URI] == holder.data.tags[TAG_SNAPSHOT_URI] == f"runs:/{first.run_id}/archive/v2.tar"
    assert linked.data.tags[TAG_ARCHIVE_SHA256] == holder.data.tags[TAG_ARCHIVE_SHA256]
    source = json.loads(linked.inputs.dataset_inputs[0].dataset.source)
    assert source["snapshot_uri"] == f"runs:/{first.run_id}/archive/v2.tar"
    assert "archive/v2.tar" in artifact_paths(first.run_id)
    # another experiment's run keeps its evidence (capped samples, manifest, chart, check report); only the
    # archive is linked
    own = artifact_paths(second.run_id)
    assert not [p for p in own if p.startswith("archive/")]
    assert {"manifest.json", "class_counts.png"} <= set(own) and any(p.startswith("images/samples_cat") for p in own)
    assert {p.split("/")[1] for p in own if p.startswith("samples/")} == {"cat", "dog"}
    assert len([p for p in own if p.startswith("samples/")]) == 4  # two per class
    # the linked run's reports are its own (another data folder: other paths in its diff and ignored lists)
    assert linked.data.metrics["total_images"] == holder.data.metrics["total_images"]

    # the archive, downloaded through the link, is checked against the recorded sha256
    files = download_archive(second.run_id, tmp_path / "download")
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
    first = log(data, f"snap_a_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)  # an archive to link to
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
    assert {"coco/train/train2017_images.tar", "coco/validation/val2017_images.tar",
            "coco/train/instances_train2017.json"} <= set(artifact_paths(first.run_id))
    for run_id in (second.run_id, other.run_id):
        run = mlflow.get_run(run_id)
        assert run.data.tags[TAG_SNAPSHOT] == first.run_id
        assert run.data.tags[f"{TAG_ARCHIVE_SHA256}.train"] == holder.data.tags[f"{TAG_ARCHIVE_SHA256}.train"]
        paths = artifact_paths(run_id)
        assert not [p for p in paths if p.endswith(".tar") or "/images/" in p or p.endswith("2017.json")]
        assert "coco/validation/validation_report.json" in paths  # what is new to the run: its reports
        assert not [p for p in paths if "/previews/" in p]  # drawn from the data: stored with it, once
    assert any(p.startswith("coco/train/previews/") and p.endswith(".jpg") for p in artifact_paths(first.run_id))


def test_archive_is_byte_identical_after_touching_every_file(catsdogs_dir, tmp_path):
    photos = sorted(catsdogs_dir.rglob("*.jpg"))[:40]
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos:
        shutil.copy2(photo, folder / photo.name)
    members = [(f"v1/{p.name}", p) for p in sorted(folder.iterdir())]
    first = write_archive(members, tmp_path / "a.tar")
    for path in folder.iterdir():  # another day, another machine: new mtimes, other permissions
        os.utime(path, (1_900_000_000.5, 1_900_000_000.5))
        path.chmod(0o600)
    second = write_archive(list(reversed(members)), tmp_path / "b.tar")
    assert first == second and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert first == hashlib.sha256((tmp_path / "a.tar").read_bytes()).hexdigest()
    with tarfile.open(tmp_path / "a.tar") as archive:
        infos = archive.getmembers()
        assert [i.name for i in infos] == sorted(name for name, _ in members)
        assert {(i.mtime, i.uid, i.gid, i.uname, i.mode) for i in infos} == {(0, 0, 0, "", 0o644)}
        assert not any(i.pax_headers for i in infos)
        assert archive.extractfile(infos[0]).read() == (folder / infos[0].name[3:]).read_bytes()
    images = sum(p.stat().st_size for p in folder.iterdir())
    assert (tmp_path / "a.tar").stat().st_size < images + 1024 * len(members) + 2 * 512 + 10240  # header + padding each


def test_long_names_get_a_pax_header_only_where_needed(tmp_path):
    image = write_image(tmp_path / "a.png", seed=3)
    long_name = "cat/" + "x" * 300 + ".png"
    write_archive([("cat/short.png", image), (long_name, image)], tmp_path / "a.tar")
    with tarfile.open(tmp_path / "a.tar") as archive:
        infos = {i.name: i for i in archive.getmembers()}
    assert set(infos) == {"cat/short.png", long_name}
    assert not infos["cat/short.png"].pax_headers and infos[long_name].pax_headers


@pytest.mark.parametrize("name,size", [("cat/cat_00001.jpg", 12345), ("a" * 100, 0), ("x", 8 ** 11 - 1), ("é.png", 5)])
def test_fast_header_is_tarfiles_header(name, size):
    from image_lineage.data.archive import fast_header, member_header

    assert fast_header(name.encode(), size) == member_header(name, size)


def test_large_files_are_streamed_into_the_same_archive(tmp_path, monkeypatch):
    import image_lineage.data.archive as archive

    big, small = tmp_path / "big.bin", write_image(tmp_path / "small.png", seed=5)
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    members = [("a/big.bin", big), ("a/small.png", small)]
    held = write_archive(members, tmp_path / "held.tar")
    monkeypatch.setattr(archive, "READ_AHEAD_MAX", 1024)  # both files now streamed in chunks
    assert write_archive(members, tmp_path / "streamed.tar") == held
    assert (tmp_path / "held.tar").read_bytes() == (tmp_path / "streamed.tar").read_bytes()


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
    assert second.snapshot_run_id is None and "archive/v2.tar" in artifact_paths(second.run_id)
    assert "cannot read them" in caplog.text
    files = download_archive(second.run_id, tmp_path / "download")  # what it links to can be downloaded
    assert sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()) == sorted(
        r.path for r in second.manifest.records)
