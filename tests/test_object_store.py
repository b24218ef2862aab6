"""s3:// datasets on a real S3-compatible server (moto's, on loopback): same digests as local folders,
re-logs that read no object, clear errors, and an MLflow server whose artifacts live in S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import mlflow
import pytest
from helpers import SMALL_DETECTOR, artifact_paths, build_unique_versions, write_image
from tests_paths import PROJECT_ROOT

from entrypoints import check_dataset as check_cli
from entrypoints import log_folder_dataset as folder_cli
from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_DIGEST, TAG_SOURCE_URI
from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.flows.hf_log import HfRequest, log_hf_dataset
from image_lineage.tracking.dataset_sources import FolderDatasetSource
from support.local_server import LocalServer


def log_folder(data_dir, experiment, **kwargs):
    return log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version="v2", experiment_name=experiment,
                                                   quality_check="off", **kwargs))


def runs_of(experiment):
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_a_folder_copied_to_a_bucket_keeps_its_digest_and_its_runs(catsdogs_dir, tmp_path, s3, server_uri):
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    # two samples a class: an archive holds the rest, and the other experiment's run links to it
    local = log_folder(data, f"local_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)
    s3.upload_folder(data, s3.bucket, "cats")
    remote = log_folder(f"s3://{s3.bucket}/cats", f"s3_{uuid.uuid4().hex[:8]}", max_samples_per_class=2)
    assert remote.digest == local.digest and remote.snapshot_run_id == local.run_id  # stored once, found again
    run = mlflow.get_run(remote.run_id)
    source = json.loads(run.inputs.dataset_inputs[0].dataset.source)
    assert source["uri"] == f"s3://{s3.bucket}/cats/v2"
    keys = {o["key"]: o["etag"] for o in source["objects"]}
    assert len(keys) == len(remote.manifest.records) and all(len(etag) == 32 for etag in keys.values())
    listed = json.loads(mlflow.artifacts.load_text(f"runs:/{remote.run_id}/s3_objects.json"))
    assert {o["key"] for o in listed["objects"]} == set(keys)
    assert json.loads(mlflow.artifacts.load_text(f"runs:/{remote.run_id}/diff.json"))["old_version"] == "v1"
    # the source reloads the prefix, and refuses once an object changed
    logged = FolderDatasetSource.from_dict(source)
    assert sorted(p.name for p in Path(logged.load()).rglob("*.*")) == sorted(p.name for p in (data / "v2").rglob("*.*"))
    s3.client().put_object(Bucket=s3.bucket, Key="cats/v2/cat/marker.png", Body=b"another picture")
    with pytest.raises(LineageError, match="changed since it was logged: 1 object"):
        logged.load()


def test_relog_of_an_unchanged_prefix_lists_and_reads_no_object(catsdogs_dir, tmp_path, s3, server_uri, monkeypatch):
    read_log = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(read_log))
    s3.upload_folder(build_unique_versions(catsdogs_dir, tmp_path / "data"), s3.bucket, "cats")
    experiment = f"s3_{uuid.uuid4().hex[:8]}"
    first = log_folder(f"s3://{s3.bucket}/cats", experiment)
    assert first.snapshot_run_id is None and "s3_objects.json" in artifact_paths(first.run_id)  # it holds the files
    gets = s3.object_gets()
    v1, v2 = (len(list((tmp_path / "data" / version).rglob("*.*"))) for version in ("v1", "v2"))
    # the image pass streams each object of v2 and v1 (the diff's base) at most once, with no copy on disk (one
    # whose ETag, size and date match an object already read is not read: v1's copies of v2's files); the run's
    # samples (all of v2's images here) and its sample grids (up to 16 a class) read theirs again
    reads = read_log.read_text().splitlines()
    assert len(reads) == len(set(reads)) and v2 <= len(reads) <= v1 + v2 and all(r.startswith("s3://") for r in reads)
    grids = sum(min(16, count) for count in first.manifest.class_counts().values())
    assert gets == len(reads) + v2 + grids
    again = log_folder(f"s3://{s3.bucket}/cats", experiment)
    assert s3.object_gets() == gets and again.digest == first.digest  # counted at the server: no GET at all
    # one object replaced: only it is read again, and the digest follows it
    s3.client().put_object(Bucket=s3.bucket, Key="cats/v2/cat/marker.png", Body=write_image(tmp_path / "m.png", 7).read_bytes())
    changed = log_folder(f"s3://{s3.bucket}/cats", experiment)
    assert changed.digest != first.digest and read_log.read_text().splitlines()[len(reads):] == [
        f"s3://{s3.bucket}/cats/v2/cat/marker.png"]


def test_an_image_folder_prefix_is_streamed_never_copied_to_disk(catsdogs_dir, tmp_path, s3, server_uri, monkeypatch):
    """A version prefix logged with its leakage check and its images in the content store (two samples a class),
    then checked: no object is written to disk (nothing under the cache's s3/ mirror folder), and the run holds
    what the same folder's run holds: digest, pairs, and every file back, byte for byte."""
    import image_lineage

    cache = tmp_path / "cache"
    monkeypatch.setenv("IMAGE_LINEAGE_CACHE_DIR", str(cache))
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")
    s3.upload_folder(data, s3.bucket, "cats")
    runs = {}
    for name, data_dir in (("s3", f"s3://{s3.bucket}/cats"), ("local", str(data))):
        runs[name] = log_folder_version(FolderVersionRequest(
            data_dir=data_dir, version="v2", experiment_name=f"{name}_{uuid.uuid4().hex[:8]}", max_samples_per_class=2,
            snapshot="copy"))
        assert not (cache / "s3").exists(), "an object was written to disk"
    assert runs["s3"].digest == runs["local"].digest
    pairs = {name: mlflow.artifacts.load_text(f"runs:/{run.run_id}/quality/pairs.csv") for name, run in runs.items()}
    assert pairs["s3"] == pairs["local"]
    restored = image_lineage.download(runs["s3"].run_id, tmp_path / "restored")
    assert {p.relative_to(restored): p.read_bytes() for p in restored.rglob("*.*")} == {
        p.relative_to(data / "v2"): p.read_bytes() for p in (data / "v2").rglob("*.*")}
    assert check_cli.main(["--source", f"s3://{s3.bucket}/cats/v2", "--experiment-name", "checks"]) == 0
    assert not (cache / "s3").exists()


def test_hf_check_and_coco_sources_in_a_bucket(bundled_images, bundled_coco, tmp_path, s3, server_uri, experiment_name):
    s3.upload_folder(bundled_images, s3.bucket, "images")
    s3.upload_folder(bundled_coco, s3.bucket, "coco")
    for local, remote in ((bundled_images / "v2", f"s3://{s3.bucket}/images/v2"), (bundled_coco, f"s3://{s3.bucket}/coco")):
        local_id, _ = log_hf_dataset(HfRequest(source=str(local), experiment_name=experiment_name, quality_check="off"))
        remote_id, _ = log_hf_dataset(HfRequest(source=remote, experiment_name=experiment_name, quality_check="off"))
        local_run, remote_run = mlflow.get_run(local_id), mlflow.get_run(remote_id)
        assert remote_run.data.tags[TAG_DIGEST] == local_run.data.tags[TAG_DIGEST]
        assert remote_run.data.tags[TAG_SOURCE_URI] == remote and remote_run.data.tags["dataset.source_kind"] == "s3"
    assert check_cli.main(["--source", f"s3://{s3.bucket}/images/v2", "--experiment-name", experiment_name]) == 0


def test_a_coco_prefix_is_checked_streamed_only_its_annotation_files_copied(bundled_coco, tmp_path, s3, server_uri,
                                                                          monkeypatch, experiment_name):
    """check_dataset of a COCO prefix reads each image object through the image pass in memory: only the
    annotation files reach the disk, and the run holds what the local folder's run holds (digests, pairs)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("IMAGE_LINEAGE_CACHE_DIR", str(cache))
    s3.upload_folder(bundled_coco, s3.bucket, "coco")
    runs = {}
    for name, source in (("s3", f"s3://{s3.bucket}/coco"), ("local", str(bundled_coco))):
        assert check_cli.main(["--source", source, "--experiment-name", experiment_name, "--run-name", name]) == 0
        (runs[name],) = mlflow.search_runs(experiment_names=[experiment_name], filter_string=f"run_name = '{name}'",
                                           output_format="list")
    written = sorted(p.relative_to(cache / "s3").as_posix() for p in (cache / "s3").rglob("*")
                     if p.is_file() and ".index" not in p.parts)
    assert written == [f"{s3.bucket}/coco/annotations/{p.name}" for p in sorted((bundled_coco / "annotations").iterdir())]
    tags = {name: {k: v for k, v in run.data.tags.items() if k.startswith(TAG_DIGEST)} for name, run in runs.items()}
    assert tags["s3"] == tags["local"] and len(tags["s3"]) == 3  # the splits' digest, and each split's
    pairs = {name: mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/quality/pairs.csv") for name, run in runs.items()}
    assert pairs["s3"] == pairs["local"]
    assert {k: v for k, v in runs["s3"].data.metrics.items() if k.startswith("quality/")} == {
        k: v for k, v in runs["local"].data.metrics.items() if k.startswith("quality/")}


def test_a_streamed_coco_split_is_stored_reloaded_and_read_again_as_the_bucket_is_now(bundled_coco, tmp_path, s3,
                                                                                      sqlite_uri, experiment_name):
    """A streamed COCO split logged from a user's script stores its images (download gives them back) and loads
    again from the bucket; then an image and an annotation file deleted from the bucket are seen at once (the
    split refuses, or is gone), as in a folder."""
    import image_lineage

    s3.upload_folder(bundled_coco, s3.bucket, "coco")
    uri = f"s3://{s3.bucket}/coco"
    split = image_lineage.from_coco(uri, split="validation")
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run() as run:
        image_lineage.log_dataset(split, quality_check=False)
        mlflow.log_input(split, context="training")
    restored = image_lineage.download(run.info.run_id, tmp_path / "restored")
    assert sorted(p.name for p in (restored / "validation" / "images").iterdir()) == sorted(
        p.name for p in (bundled_coco / "val2017").iterdir())
    assert len(image_lineage.load(run.info.run_id)) == len(list((bundled_coco / "val2017").iterdir()))

    first = sorted((bundled_coco / "val2017").iterdir())[0].name
    s3.client().delete_object(Bucket=s3.bucket, Key=f"coco/val2017/{first}")
    with pytest.raises(LineageError, match=f"missing, e.g. {uri}/val2017/{first}"):
        image_lineage.from_coco(uri, split="validation")
    s3.client().delete_object(Bucket=s3.bucket, Key="coco/annotations/instances_val2017.json")
    with pytest.raises(LineageError, match="no annotations/instances_val2017.json"):
        image_lineage.from_coco(uri, split="validation")


def test_an_image_folder_prefix_with_a_folder_named_annotations_is_no_coco_prefix(catsdogs_dir, tmp_path, s3):
    import image_lineage

    root = tmp_path / "pets"
    for photo in sorted(catsdogs_dir.rglob("*.jpg"))[::20]:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (root / photo.parent.name / photo.name).write_bytes(photo.read_bytes())
    (root / "annotations").mkdir()
    (root / "annotations" / "labels.csv").write_text("file,label\n")
    s3.upload_folder(root, s3.bucket, "pets")
    assert image_lineage.from_image_folder(f"s3://{s3.bucket}/pets").content_digest == \
        image_lineage.from_image_folder(root).content_digest


def test_coco_finetune_from_a_bucket(bundled_coco, s3, server_uri, experiment_name):
    s3.upload_folder(bundled_coco, s3.bucket, "coco")
    request = dict(experiment_name=experiment_name, register_as=f"det_{experiment_name}", epochs=0, quality_check="off",
                   **SMALL_DETECTOR)
    local = run_finetune(FinetuneRequest(data_dir=str(bundled_coco), **request))
    remote = run_finetune(FinetuneRequest(data_dir=f"s3://{s3.bucket}/coco", **request))
    local_run, remote_run = mlflow.get_run(local.run_id), mlflow.get_run(remote.run_id)
    assert remote_run.info.status == "FINISHED"
    assert remote_run.data.tags[TAG_DIGEST] == local_run.data.tags[TAG_DIGEST]
    assert remote_run.data.tags[TAG_SOURCE_URI] == f"s3://{s3.bucket}/coco"


def bad_input_message(argv, experiment_name, caplog):
    code = folder_cli.main([*argv, "--experiment-name", experiment_name])
    assert code == 2
    assert not runs_of(experiment_name)  # nothing half-logged: the store is read before any run opens
    return caplog.text


def test_missing_bucket_and_prefix_without_versions(bundled_images, s3, server_uri, experiment_name, caplog):
    text = bad_input_message(["--data-dir", "s3://no-such-bucket/cats"], experiment_name, caplog)
    assert "bucket 'no-such-bucket' does not exist" in text
    s3.upload_folder(bundled_images, s3.bucket, "images")
    text = bad_input_message(["--data-dir", f"s3://{s3.bucket}/image"], experiment_name, caplog)
    assert "no version prefixes under" in text and "images" in text  # names what is there
    text = bad_input_message(["--data-dir", f"s3://{s3.bucket}/images", "--version", "v7"], experiment_name, caplog)
    assert "versions found: v1, v2" in text


def test_wrong_or_missing_credentials_name_the_variables_never_the_values(bundled_images, s3, server_uri, experiment_name,
                                                                          caplog, monkeypatch):
    import boto3
    from moto import settings

    s3.upload_folder(bundled_images, s3.bucket, "images")
    iam = boto3.client("iam", endpoint_url=s3.endpoint, region_name="us-east-1")
    user = f"reader-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-value")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server checks signatures from now on
    text = bad_input_message(["--data-dir", f"s3://{s3.bucket}/images"], experiment_name, caplog)
    assert "refused the credentials" in text and "AWS_SECRET_ACCESS_KEY" in text
    assert "not-the-secret-value" not in text and key["AccessKeyId"] not in text
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    caplog.clear()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup off a cloud machine
    text = bad_input_message(["--data-dir", f"s3://{s3.bucket}/images"], experiment_name, caplog)
    assert "no S3 credentials found" in text and "AWS_ACCESS_KEY_ID" in text


def test_server_stopped_mid_read_then_rerun_completes(catsdogs_dir, tmp_path, s3, server_uri, experiment_name, caplog):
    s3.upload_folder(build_unique_versions(catsdogs_dir, tmp_path / "data"), s3.bucket, "cats")
    s3.stop_after_gets = 3
    argv = ["--data-dir", f"s3://{s3.bucket}/cats", "--version", "v2", "--quality-check", "off"]
    started = time.monotonic()
    text = bad_input_message(argv, experiment_name, caplog)
    assert time.monotonic() - started < 30, "a stopped store must be reported within seconds"
    assert f"s3://{s3.bucket}/cats/" in text and ("does not answer" in text or "run again" in text)
    s3.stop_after_gets = None
    s3.start()
    assert folder_cli.main([*argv, "--experiment-name", experiment_name]) == 0
    (run,) = runs_of(experiment_name)
    assert run.info.status == "FINISHED" and run.data.metrics["total_images"] == 10


@pytest.mark.long(seconds=34)
def test_mlflow_server_with_its_artifacts_in_s3(s3, tmp_path, bundled_images, experiment_name):
    """The compose recipe's artifact path: `mlflow server --artifacts-destination s3://...` (proxied)."""
    env = {**os.environ, **s3.env}
    with LocalServer(tmp_path / "server", env=env, artifacts_destination=f"s3://{s3.bucket}/mlartifacts") as server:
        mlflow.set_tracking_uri(server.uri)
        logged = log_folder_version(FolderVersionRequest(data_dir=str(bundled_images), version="v2",
                                                         experiment_name=experiment_name, snapshot="copy"))
        paths = artifact_paths(logged.run_id)
        assert {"manifest.json", "samples/dog/dog_01.jpg"} <= set(paths)
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="mlartifacts/")["Contents"]]
        assert any(k.endswith(f"{logged.run_id}/artifacts/samples/dog/dog_01.jpg") for k in keys)
        downloaded = mlflow.artifacts.download_artifacts(f"runs:/{logged.run_id}/samples/dog/dog_01.jpg", dst_path=str(tmp_path))
        assert open(downloaded, "rb").read() == (bundled_images / "v2/dog/dog_01.jpg").read_bytes()
        listing = f"{server.uri}/ajax-api/2.0/mlflow/artifacts/list?run_uuid={logged.run_id}&path=samples"  # the UI's list
        with urllib.request.urlopen(listing) as answer:
            assert {f["path"] for f in json.load(answer)["files"]} == {"samples/cat", "samples/dog"}


def test_two_processes_train_on_disjoint_shards(bundled_coco, tmp_path, server_uri, experiment_name):
    """coco_finetune with nproc_per_node=2 on CPU (gloo): one run, each rank a disjoint half of the training
    images, losses averaged over the ranks, and a model that loads."""
    args = [f"--{k.replace('_', '-')}={'none' if v is None else v}" for k, v in {**SMALL_DETECTOR, "max_images": 0}.items()]
    command = [sys.executable, "-m", "entrypoints.coco_finetune", "--nproc-per-node", "2", "--data-dir", str(bundled_coco),
               "--experiment-name", experiment_name, "--register-as", f"det_{experiment_name}", "--epochs", "1",
               "--quality-check", "off", *args]
    env = {**os.environ, "MLFLOW_TRACKING_URI": server_uri, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs_of(experiment_name)  # only rank 0 talked to MLflow
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    shards = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/distributed/train_shards_epoch_1.json"))
    first, second = map(set, shards["shards"])
    assert not first & second and len(first | second) == int(run.data.params["num_train_images"])
    assert "epoch_loss" in run.data.metrics
    model = mlflow.pytorch.load_model(f"models:/det_{experiment_name}/1")
    assert sum(p.numel() for p in model.parameters()) > 0
