"""Run in a fresh process, since a Spark session's jars are fixed when its JVM starts: the image pass of an
``s3://`` prefix of image folders and of a COCO prefix with ``engine=spark``, the objects read by Spark's
executors through ``s3a://`` (hadoop-aws) from the loopback S3 server, the driver only listing them.

    python tests/support/spark_s3a.py JARS FOLDER_URI COCO_URI

Prints one JSON line: digests, the leakage pairs as CSV, and every object the driver read itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def start_session(jars: Path):
    from pyspark.sql import SparkSession

    settings = {
        "spark.master": "local[2]", "spark.driver.memory": "1g", "spark.ui.showConsoleProgress": "false",
        "spark.jars": ",".join(str(jar) for jar in sorted(jars.glob("*.jar"))),
        "spark.hadoop.fs.s3a.endpoint": os.environ["AWS_ENDPOINT_URL"],
        "spark.hadoop.fs.s3a.path.style.access": "true", "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": os.environ["AWS_ACCESS_KEY_ID"],
        "spark.hadoop.fs.s3a.secret.key": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    # hadoop-aws 3.3.1 (the one the package index carries) reads these as plain numbers, where the defaults of
    # pyspark's Hadoop 3.4+ say "60s" or "24h": given as numbers (a cluster's matching hadoop-aws needs none of this)
    settings.update({f"spark.hadoop.fs.s3a.{key}": value for key, value in (
        ("threads.keepalivetime", "60"), ("connection.establish.timeout", "30000"), ("connection.timeout", "200000"),
        ("multipart.purge.age", "86400"), ("connection.ttl", "300000"), ("connection.idle.time", "60000"),
        ("connection.acquisition.timeout", "60000"), ("connection.request.timeout", "0"))})
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def finetune_data_pass(coco_uri: str) -> dict:
    """coco_finetune's data pass: the executors read the objects, training reads the prefix's mirror."""
    from image_lineage.flows.finetune import FinetuneRequest
    from image_lineage.flows.finetune_data import read_data

    ingestion = read_data(FinetuneRequest(data_dir=coco_uri, engine="spark", quality_check="off"))
    return {"digests": {s.split: s.digest for s in ingestion.splits},
            "files_on_disk": all(Path(s.index.image_path(image)).is_file()
                                 for s in ingestion.splits for image in s.index.images)}


def main(jars: str, folder_uri: str, coco_uri: str) -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    start_session(Path(jars))  # the active session: engine=spark takes it, as on Databricks

    import image_lineage
    from image_lineage.data import read

    from image_lineage.data import object_store

    # every object the driver reads itself: streamed (read_object) or copied to disk (fetch, the mirror's);
    # a COCO prefix's annotation files are copied, its images must not be
    driver_reads = []
    own_read, own_fetch = read.read_object, object_store.fetch
    read.read_object = lambda location: (driver_reads.append(location), own_read(location))[1]
    object_store.fetch = lambda client, bucket, stored, target, uri: (
        driver_reads.append(stored.key) if not stored.key.endswith(".json") else None,
        own_fetch(client, bucket, stored, target, uri))[1]
    result = {
        "folder_digest": image_lineage.from_image_folder(folder_uri, engine="spark").content_digest,
        "folder_pairs": image_lineage.check(folder_uri, engine="spark").pairs.to_csv(index=False),
        "coco_digests": {split: image_lineage.from_coco(coco_uri, split=split, engine="spark").content_digest
                         for split in ("train", "validation")},
        "coco_pairs": image_lineage.check(coco_uri, engine="spark").pairs.to_csv(index=False),
        "driver_reads": list(driver_reads),
        "finetune": finetune_data_pass(coco_uri),  # training needs the files: the mirror copies them
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
