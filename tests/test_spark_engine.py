"""engine=spark: the image pass as a Spark job (local[2], as on a cluster) gives the local engine's records,
digests, manifests and pairs, field for field, on the real photos, the COCO subset and through the entry point."""

import json
import os
import shutil
import subprocess
import sys

import mlflow
import pytest

from bench.common import SHARED_PHOTOS, build_folder, build_leaky_splits
from tests_paths import PROJECT_ROOT

import image_lineage
from entrypoints import log_folder_dataset as folder_cli
from image_lineage.core.errors import LineageError
from image_lineage.data.kinds.base import LoadOptions
from image_lineage.data.read import read_images
from image_lineage.flows.ingest import read_source
from image_lineage.quality.pairs import find_pairs

S3A_JARS = PROJECT_ROOT / ".venv" / "s3a-jars"  # tools/s3a_test_jars.py puts hadoop-aws there (make test)

pytest.importorskip("pyspark", reason="engine=spark needs pyspark (the test extra installs it)")
if shutil.which("java") is None:
    pytest.skip("engine=spark needs a Java runtime (.ci/run installs default-jre-headless)", allow_module_level=True)


@pytest.fixture(autouse=True)
def spark_conf(monkeypatch):
    # the session is built once for the whole test process, from this setting (two cores, as the bench)
    monkeypatch.setenv("IMAGE_LINEAGE_SPARK_CONF", "spark.master=local[2],spark.driver.memory=1g")


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """Each engine reads every file itself: a new, empty record cache per call."""
    counter = iter(range(100))

    def use_new_cache():
        monkeypatch.setenv("IMAGE_LINEAGE_CACHE_DIR", str(tmp_path / f"cache_{next(counter)}"))

    return use_new_cache


def odd_names(root):
    """Real photos under names Spark's file listing treats specially: glob characters, spaces, accents,
    a percent sign, and a leading underscore (Hadoop hides such files: they are read on the driver)."""
    photo = next(SHARED_PHOTOS.glob("cat/*.jpg"))
    folder = root / "val" / "cat"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("we ird%20[1]#x é.jpg", "_hidden_by_hadoop.jpg", "{a,b}*?.jpg"):
        shutil.copyfile(photo, folder / name)
    (root / "val" / "cat" / "broken.jpg").write_bytes(photo.read_bytes()[:-4000])  # cut short: not whole


def test_spark_gives_the_local_records_and_pairs_on_real_photos(tmp_path, fresh_cache):
    root = tmp_path / "leaky"
    build_leaky_splits(root)
    odd_names(root)
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    for check, perceptual in (("structure", False), ("decode", True)):
        local = read_images(paths, check, cache=None, perceptual=perceptual)
        spark = read_images(paths, check, cache=None, perceptual=perceptual, engine="spark")
        assert spark == local  # every field: sha256, size, geometry, format, check, hashes, corners
        assert sum(isinstance(facts, str) for facts in spark) == 1  # the cut file, with the same reason
    reports = {}
    for engine in ("local", "spark"):
        fresh_cache()
        options = LoadOptions(perceptual=True, on_bad_image="skip", engine=engine)
        ingestion = read_source(str(root), options=options)
        reports[engine] = (ingestion.digest, find_pairs(ingestion.images, engine=engine).pairs)
    assert reports["spark"][0] == reports["local"][0]
    assert reports["spark"][1].equals(reports["local"][1]) and len(reports["local"][1]) >= 60


def test_spark_gives_the_local_coco_split(coco_tiny_dir, fresh_cache):
    loaded = {}
    for engine in ("local", "spark"):
        fresh_cache()
        (split,) = read_source(str(coco_tiny_dir), "validation",
                               LoadOptions(perceptual=True, engine=engine)).splits
        loaded[engine] = split
    assert loaded["spark"].digest == loaded["local"].digest
    assert loaded["spark"].index.facts == loaded["local"].index.facts


def test_log_folder_dataset_with_engine_spark_logs_what_the_local_engine_logs(tmp_path, fresh_cache, sqlite_uri,
                                                                            experiment_name):
    """2,000 photos (each real photo re-encoded ~7 times with a stamp: near-duplicates of each other) through
    the entry point with each engine: same digest tags, manifest, quality metrics and pairs.csv."""
    build_folder(SHARED_PHOTOS, tmp_path / "photos" / "v1", 2000)
    runs = {}
    for engine in ("local", "spark"):
        fresh_cache()
        assert folder_cli.main(["--data-dir", str(tmp_path / "photos"), "--version", "v1", "--engine", engine,
                                "--snapshot", "copy", "--run-name", engine,
                                "--experiment-name", experiment_name]) == 0
        (run,) = mlflow.search_runs(experiment_names=[experiment_name], filter_string=f"run_name = '{engine}'",
                                    output_format="list")
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / engine))
        runs[engine] = run
    local, spark = runs["local"], runs["spark"]
    # every dataset tag but the ones naming a run (each run stores its own files here: snapshot=copy)
    digest_tags = {k: v for k, v in local.data.tags.items() if k.startswith("dataset.") and "snapshot" not in k}
    assert digest_tags and digest_tags.items() <= spark.data.tags.items()
    assert {k: v for k, v in spark.data.metrics.items()} == local.data.metrics
    assert local.data.metrics["quality/near_duplicate_pairs"] > 1000
    for name in ("quality/pairs.csv", "manifest.json"):
        assert (tmp_path / "spark" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_spark_settings_must_be_key_value(monkeypatch):
    from image_lineage.core import config

    monkeypatch.setenv("IMAGE_LINEAGE_SPARK_CONF", "spark.master=k8s://https://k8s.example:443, spark.executor.instances=8")
    assert config.spark_settings() == {"spark.master": "k8s://https://k8s.example:443", "spark.executor.instances": "8"}
    monkeypatch.setenv("IMAGE_LINEAGE_SPARK_CONF", "spark.master=local[2], local[4]")
    with pytest.raises(LineageError, match=r"IMAGE_LINEAGE_SPARK_CONF: 'local\[4\]' is not key=value"):
        config.spark_settings()


def test_the_local_engine_never_imports_pyspark(catsdogs_dir):
    """(MLflow itself imports parts of pyspark where it is installed: the data layer, which has no MLflow, shows it.)"""
    code = (f"import sys; from image_lineage.data.folders import scan_version; "
            f"scan_version({str(catsdogs_dir)!r}, perceptual=True, use_cache=False); "
            f"assert not [m for m in sys.modules if 'spark' in m], 'pyspark imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_an_s3_prefix_without_a_connector_is_refused_before_any_run(bundled_images, s3, sqlite_uri, experiment_name,
                                                                    caplog, fresh_cache):
    """A session with no S3 connector (pyspark ships none) cannot list an s3:// prefix: refused, naming the prefix
    as Spark sees it and what to do, and no run is left behind."""
    fresh_cache()
    s3.upload_folder(bundled_images, s3.bucket, "images")
    uri = f"s3://{s3.bucket}/images"
    assert folder_cli.main(["--data-dir", uri, "--version", "v1", "--engine", "spark",
                            "--experiment-name", experiment_name]) == 2
    assert f"cannot list s3a://{s3.bucket}/images/v1" in caplog.text and "hadoop-aws" in caplog.text
    assert "IMAGE_LINEAGE_SPARK_S3_SCHEME=s3" in caplog.text and "engine=local" in caplog.text
    assert not mlflow.search_runs(experiment_names=[experiment_name], output_format="list")


@pytest.mark.long(seconds=61)
def test_an_s3_prefix_is_read_by_the_executors_through_s3a(tmp_path, bundled_coco, s3, fresh_cache):
    """engine=spark on s3:// prefixes (image folders with planted copies, and COCO): Spark's executors read the
    objects through hadoop-aws's s3a:// connector, the driver only lists them (it reads no image object), and the
    digests and pairs are the local engine's on the same files."""
    jars = S3A_JARS
    if not all((jars / name).is_file() for name in ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")):
        pytest.skip(f"no S3 connector jars in {jars}: `make test` fetches them (tools/s3a_test_jars.py)")
    root = tmp_path / "leaky"
    build_leaky_splits(root)
    s3.upload_folder(root, s3.bucket, "leaky")
    s3.upload_folder(bundled_coco, s3.bucket, "coco")
    fresh_cache()  # the child reads every object itself
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "tests" / "support" / "spark_s3a.py"), str(jars),
                           f"s3://{s3.bucket}/leaky", f"s3://{s3.bucket}/coco"],
                          capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    spark = json.loads(done.stdout.strip().splitlines()[-1])
    assert spark["driver_reads"] == []
    fresh_cache()
    assert spark["folder_digest"] == image_lineage.from_image_folder(root).content_digest
    assert spark["coco_digests"] == {split: image_lineage.from_coco(bundled_coco, split=split).content_digest
                                     for split in ("train", "validation")}
    assert spark["folder_pairs"] == image_lineage.check(root).pairs.to_csv(index=False)
    assert spark["folder_pairs"].count("\n") > 2  # the planted copies are found
    assert spark["coco_pairs"] == image_lineage.check(bundled_coco).pairs.to_csv(index=False)
    # coco_finetune's data pass: the same digests, and the files training reads on this machine's disk
    assert spark["finetune"] == {"digests": spark["coco_digests"], "files_on_disk": True}


@pytest.mark.long(seconds=47)
def test_torchrun_with_engine_spark_runs_one_spark_job_per_machine(bundled_coco, tmp_path, sqlite_uri, experiment_name):
    """coco_finetune with nproc_per_node=2 and engine=spark: the first rank's Spark job reads each image once; the
    second rank waits, then finds every file in the record cache they share (it starts no Spark session); the run
    logs the local engine's digest."""
    from helpers import SMALL_DETECTOR

    args = [f"--{k.replace('_', '-')}={'none' if v is None else v}" for k, v in {**SMALL_DETECTOR, "max_images": 0}.items()]
    command = [sys.executable, "-m", "entrypoints.coco_finetune", "--nproc-per-node", "2", "--data-dir", str(bundled_coco),
               "--experiment-name", experiment_name, "--epochs", "0", "--quality-check", "off", "--engine", "spark", *args]
    read_log = tmp_path / "reads.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": sqlite_uri, "PYTHONPATH": str(PROJECT_ROOT),
           "IMAGE_LINEAGE_CACHE_DIR": str(tmp_path / "cache"), "IMAGE_LINEAGE_READ_LOG": str(read_log)}
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reads = read_log.read_text().splitlines()
    images = sorted(str(p) for folder in ("train2017", "val2017") for p in (bundled_coco / folder).iterdir())
    assert sorted(reads) == images  # each image once: by rank 0's Spark job, none by rank 1
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.data.params["world_size"] == "2"
    assert run.data.tags["dataset.digest.train"] == image_lineage.from_coco(bundled_coco, split="train").content_digest


def test_a_dbfs_location_is_read_by_the_executors_on_the_mount(catsdogs_dir, tmp_path, monkeypatch, fresh_cache):
    """dbfs:/ (Databricks mounts it at /dbfs on every node): the executors read the mounted files, same digest."""
    monkeypatch.setenv("IMAGE_LINEAGE_DBFS_MOUNT", str(tmp_path / "dbfs"))
    shutil.copytree(catsdogs_dir, tmp_path / "dbfs" / "pets", ignore=shutil.ignore_patterns("*.md"))
    fresh_cache()
    on_spark = image_lineage.from_image_folder("dbfs:/pets", engine="spark").content_digest
    fresh_cache()
    assert on_spark == image_lineage.from_image_folder(tmp_path / "dbfs" / "pets").content_digest


def test_each_folder_is_listed_once():
    """Spark lists each folder recursively: a sub-folder is not listed again, even when a sibling's name sorts
    between it and its parent (``b c`` between ``b`` and ``b/d``)."""
    from image_lineage.data.spark_pass import top_folders

    assert top_folders(["/a/b/x.jpg", "/a/b c/y.jpg", "/a/b/d/z.jpg"]) == ["/a/b", "/a/b c"]
