"""Every environment variable the project reads or sets, in one place.

Each is read when asked (tests and users change them between calls), never at import. The library
writes the environment in four places only, all here: MLflow's HTTP retry defaults
(:func:`apply_http_defaults`, the command line's process; explicit settings of the user's win), MLflow's
system-metrics interval (a default, for training runs), MLflow's run-address printing, which ours
replace in a process that opens runs through :func:`image_lineage.tracking.runs.start_run`, and the Python
that Spark's workers run (a default, when ``engine=spark`` builds its own session).
"""

from __future__ import annotations

import os
from pathlib import Path

from image_lineage.core.errors import LineageError

# ---------------------------------------------------------------- the project's own

CACHE_DIR = "IMAGE_LINEAGE_CACHE_DIR"  # where the image record cache and s3 mirrors live; "off": none
READ_LOG = "IMAGE_LINEAGE_READ_LOG"  # a file every image read is appended to (tests count reads with it)
QUICK_ACK = "IMAGE_LINEAGE_QUICK_ACK"  # "off": the command line leaves MLflow's HTTP session as it is
RUN_LINKS = "IMAGE_LINEAGE_RUN_LINKS"  # "off": no run addresses printed when runs end
STORE_EXPERIMENT = "IMAGE_LINEAGE_STORE_EXPERIMENT"  # the experiment whose runs hold the content store's packs
SPARK_CONF = "IMAGE_LINEAGE_SPARK_CONF"  # engine=spark without an active session: "spark.master=...,key=value"
DBFS_MOUNT = "IMAGE_LINEAGE_DBFS_MOUNT"  # where dbfs:/ locations are read as files (Databricks: /dbfs)
SPARK_S3_SCHEME = "IMAGE_LINEAGE_SPARK_S3_SCHEME"  # engine=spark: how the cluster names s3:// objects (s3a, s3)


def cache_dir() -> Path | None:
    """``$IMAGE_LINEAGE_CACHE_DIR`` (default ``~/.cache/image_lineage``); None when it says ``off``."""
    folder = os.environ.get(CACHE_DIR) or str(Path.home() / ".cache" / "image_lineage")
    return None if folder.lower() == "off" else Path(folder)


def store_experiment() -> str:
    """The experiment that holds the content store's packs (one per tracking server)."""
    return os.environ.get(STORE_EXPERIMENT) or "image-lineage-store"


def spark_settings() -> dict[str, str]:
    """The Spark settings ``$IMAGE_LINEAGE_SPARK_CONF`` gives (``spark.master=spark://host:7077,spark.executor.memory=4g``:
    comma-separated ``key=value``) for the session ``engine=spark`` builds when none is active."""
    text = os.environ.get(SPARK_CONF, "")
    settings = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise LineageError(f"{SPARK_CONF}: {part!r} is not key=value (example: spark.master=local[2],"
                             f"spark.driver.memory=2g)")
        settings[key.strip()] = value.strip()
    return settings


def dbfs_mount() -> str:
    """Where a ``dbfs:/`` location is read as a file: Databricks mounts DBFS at ``/dbfs`` on every node."""
    return os.environ.get(DBFS_MOUNT) or "/dbfs"


def spark_s3_scheme() -> str:
    """The scheme Spark's executors read an ``s3://`` object by: ``s3a`` (open-source Spark with hadoop-aws, the
    default), ``s3`` (Databricks, EMR), as ``$IMAGE_LINEAGE_SPARK_S3_SCHEME`` says."""
    scheme = (os.environ.get(SPARK_S3_SCHEME) or "s3a").strip().removesuffix("://")
    if not scheme.replace("-", "").isalnum():
        raise LineageError(f"{SPARK_S3_SCHEME}: {scheme!r} is no URI scheme (s3a, or s3 on Databricks and EMR).")
    return scheme


def default_spark_python(executable: str) -> None:
    """PySpark starts its workers with ``$PYSPARK_PYTHON`` (``python3`` by default; its ``spark.pyspark.python``
    setting is read by ``spark-submit`` only): they must import image_lineage, so default to this interpreter."""
    os.environ.setdefault("PYSPARK_PYTHON", executable)


def read_log() -> str | None:
    return os.environ.get(READ_LOG) or None


def quick_acks_wanted() -> bool:
    return os.environ.get(QUICK_ACK, "on").lower() not in ("0", "off", "false", "no")


# ---------------------------------------------------------------- MLflow

TRACKING_URI = "MLFLOW_TRACKING_URI"
RUN_ID = "MLFLOW_RUN_ID"  # set by `mlflow run`: the run this process logs into
EXPERIMENT_ID = "MLFLOW_EXPERIMENT_ID"
EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
SUPPRESS_URLS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
SYSTEM_METRICS_INTERVAL = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"
# MLflow reads these for every REST call: minutes of retries by default; a typo should fail in seconds.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def tracking_uri() -> str | None:
    return os.environ.get(TRACKING_URI) or None


def project_run_id() -> str | None:
    """The run ``mlflow run`` created for this process, or None outside ``mlflow run``."""
    return os.environ.get(RUN_ID) or None


def experiment_id() -> str | None:
    return os.environ.get(EXPERIMENT_ID) or None


def experiment_name() -> str | None:
    return os.environ.get(EXPERIMENT_NAME) or None


def tracking_credentials() -> tuple[str | None, str | None, str | None]:
    """(user, password, token) as MLflow reads them for a tracking server."""
    return (os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD"),
            os.environ.get("MLFLOW_TRACKING_TOKEN"))


def apply_http_defaults() -> None:
    """Shorter HTTP retries for MLflow's REST calls, unless the user set them."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def default_system_metrics_interval(seconds: str) -> None:
    """MLflow samples system metrics every 10 s: a short training run would show none."""
    os.environ.setdefault(SYSTEM_METRICS_INTERVAL, seconds)


def run_links_wanted() -> bool:
    """Whether to print each run's address when it ends (``IMAGE_LINEAGE_RUN_LINKS``, default on)."""
    return os.environ.get(RUN_LINKS, "on").lower() not in ("0", "off", "false", "no")


def silence_mlflow_run_links() -> None:
    """MLflow prints its own run addresses, which open the UI's GenAI view and cost a ``get_run`` request
    each: in this process, ours replace them (a parent ``mlflow run`` process prints its own unless the user
    sets MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT, as the README's homework block does)."""
    os.environ[SUPPRESS_URLS] = "true"


# ---------------------------------------------------------------- Hugging Face, torch, S3

def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"


def torch_home() -> str:
    return os.environ.get("TORCH_HOME", "~/.cache/torch")


def under_torchrun() -> bool:
    """True in a process ``torchrun`` started (it sets RANK, LOCAL_RANK, WORLD_SIZE)."""
    return "RANK" in os.environ or "LOCAL_RANK" in os.environ


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


S3_ENDPOINTS = ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
S3_CLIENT_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                       "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_DEFAULT_REGION", *S3_ENDPOINTS)


def s3_endpoint() -> str | None:
    """The S3-compatible endpoint (MinIO, Ceph), as boto3 or MLflow's S3 store name it; None for AWS."""
    return next((os.environ[name] for name in S3_ENDPOINTS if os.environ.get(name)), None)


def s3_settings() -> tuple:
    """Everything a boto3 client's credentials and endpoint depend on (one client per setting)."""
    return tuple(os.environ.get(name) for name in S3_CLIENT_VARIABLES)


# ---------------------------------------------------------------- OpenLineage (read as openlineage-python reads them)

OPENLINEAGE_NAMESPACE = "OPENLINEAGE_NAMESPACE"  # the jobs' namespace (the client's convention; default image_lineage)


def openlineage_configuration() -> str | None:
    """What configures an OpenLineage transport, as ``openlineage-python``'s client looks for one
    (``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__*``, ``OPENLINEAGE_CONFIG``, ``openlineage.yml`` in the
    working folder or ``~/.openlineage/``); None when nothing does or ``OPENLINEAGE_DISABLED=true``: then no
    event is made and the client is not imported (the client itself would print events to the console)."""
    if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return None
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG"):
        if os.environ.get(name):
            return name
    if any(name.startswith("OPENLINEAGE__TRANSPORT") for name in os.environ):
        return "OPENLINEAGE__TRANSPORT__*"
    for path in (Path.cwd() / "openlineage.yml", Path.home() / ".openlineage" / "openlineage.yml"):
        if path.is_file():
            return str(path)
    return None


def openlineage_namespace() -> str:
    return os.environ.get(OPENLINEAGE_NAMESPACE) or "image_lineage"
