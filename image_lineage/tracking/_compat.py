"""Every private MLflow and ``datasets`` API the project uses, in one place.

Each is a name MLflow or ``datasets`` does not document, so an upgrade may move or change it.
``tests/test_compat.py`` calls every function here against the installed versions and fails, naming the
function, when one no longer works as this module expects. Nothing else in the project touches a private
name of either library.
"""

from __future__ import annotations

import threading

# MLflow's run tag holding a dataset input's context (training, validation, ...): mlflow.utils.mlflow_tags
DATASET_CONTEXT_TAG = "mlflow.data.context"
# The longest param value MLflow stores whole (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH; longer ones are
# cut, or refused by some stores)
MAX_PARAM_LENGTH = 6000


def dataset_entity(dataset):
    """The ``mlflow.entities.Dataset`` of an ``mlflow.data`` dataset, for ``MlflowClient.log_inputs``
    (``mlflow.log_input`` builds it the same way, but only for the active run)."""
    return dataset._to_mlflow_entity()


def infer_schema(frame):
    """MLflow's schema inference for a pandas frame (what ``mlflow.data`` datasets compute themselves)."""
    from mlflow.types.utils import _infer_schema

    return _infer_schema(frame)


def tracking_store_schemes() -> list[str]:
    """The URI schemes MLflow has a tracking store for."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    return sorted(scheme for scheme in _tracking_store_registry._registry if scheme)


def has_tracking_store(uri: str) -> bool:
    """Whether MLflow has a tracking store for ``uri``'s scheme."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    try:
        _tracking_store_registry.get_store_builder(uri)
    except MlflowException:
        return False
    return True


def artifact_repository(artifact_uri: str):
    """The artifact repository object behind a run's artifact URI (one object serves many uploads;
    ``MlflowClient.log_artifact`` looks the run up again for every file)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri)


def range_reader(artifact_uri: str):
    """A function ``(artifact path, first byte, last byte) -> those bytes`` where the artifact store behind
    ``artifact_uri`` serves byte ranges, else None. These four do, and MLflow's repositories for them only
    download whole files:

    * the tracking server's proxied artifacts (``mlflow-artifacts:``, or an ``http(s)://`` artifact root): an
      HTTP Range request, made with the repository's host credentials (``_host_creds``, private);
    * S3 (``s3://``, also an S3-compatible endpoint in ``MLFLOW_S3_ENDPOINT_URL``): ``GetObject`` with a
      ``Range``, through the repository's own boto3 client (``_get_s3_client``, private, which applies MLflow's
      S3 settings) and its expected bucket owner (``_bucket_owner_params``, private);
    * Google Cloud Storage (``gs://``): a ranged media download, through the repository's
      ``google.cloud.storage`` client (``client``, ``parse_gcs_uri`` and ``_GCS_DEFAULT_TIMEOUT``, MLflow's
      ``MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT``: undocumented or private);
    * Azure Blob Storage (``wasbs://``): ``download_blob`` with an offset and a length, through the repository's
      ``BlobServiceClient`` (``client``, and ``parse_wasbs_uri``: undocumented).

    The function raises :class:`RangeNotServed` when the store answers with anything but the range asked for (a
    proxy that drops the header would send the whole file), and ``MlflowException`` for an error of the store."""
    from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository
    from mlflow.store.artifact.gcs_artifact_repo import GCSArtifactRepository
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    repository = artifact_repository(artifact_uri)
    readers = {HttpArtifactRepository: _http_range_reader, S3ArtifactRepository: _s3_range_reader,
               GCSArtifactRepository: _gcs_range_reader, AzureBlobArtifactRepository: _azure_range_reader}
    for kind, reader in readers.items():
        if isinstance(repository, kind):
            return reader(repository)
    return None


def _http_range_reader(repository):
    import posixpath

    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import http_request

    def read(path: str, first: int, last: int) -> bytes:
        response = http_request(repository._host_creds, posixpath.join("/", path), "GET", stream=True,
                                extra_headers={"Range": f"bytes={first}-{last}"})
        with response:
            if response.status_code >= 400:
                raise MlflowException(f"GET {path} (bytes {first}-{last}): HTTP {response.status_code}")
            if response.status_code != 206:
                raise RangeNotServed(f"GET {path} (bytes {first}-{last}): HTTP {response.status_code}, not 206")
            return response.content

    return read


def _s3_range_reader(repository):
    import posixpath

    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    bucket, root = repository.parse_s3_compliant_uri(repository.artifact_uri)
    # a boto3 client is safe to share between threads once made, but making one on the shared default session is
    # not (boto/boto3#1592), and downloads fetch packs on two threads
    with _S3_CLIENT_LOCK:
        client = repository._get_s3_client()
    owner = repository._bucket_owner_params  # {"ExpectedBucketOwner": ...} when MLFLOW_S3_EXPECTED_BUCKET_OWNER is set

    def read(path: str, first: int, last: int) -> bytes:
        key = posixpath.join(root, path)
        try:
            response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **owner)
            body = response["Body"]
            try:
                if not response.get("ContentRange", "").startswith(f"bytes {first}-"):  # closed unread
                    raise RangeNotServed(f"GET s3://{bucket}/{key} (bytes {first}-{last}): not a range in reply")
                return body.read()
            finally:
                body.close()
        except (BotoCoreError, ClientError) as exc:
            raise MlflowException(f"GET s3://{bucket}/{key} (bytes {first}-{last}): {exc}") from exc

    return read


_S3_CLIENT_LOCK = threading.Lock()


def _gcs_range_reader(repository):
    import posixpath

    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError  # credentials: not a GoogleAPIError
    from mlflow.exceptions import MlflowException

    bucket_name, root = repository.parse_gcs_uri(repository.artifact_uri)
    bucket = repository.client.bucket(bucket_name)  # MLflow shares its client between its download threads too

    def read(path: str, first: int, last: int) -> bytes:
        key = posixpath.join(root, path)
        try:
            data = bucket.blob(key).download_as_bytes(start=first, end=last,  # end inclusive, as HTTP's
                                                      timeout=repository._GCS_DEFAULT_TIMEOUT)
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise MlflowException(f"GET gs://{bucket_name}/{key} (bytes {first}-{last}): {exc}") from exc
        return _whole_range(data, f"gs://{bucket_name}/{key}", first, last)

    return read


def _azure_range_reader(repository):
    import posixpath

    from azure.core.exceptions import AzureError
    from mlflow.exceptions import MlflowException

    container, _, root, _ = repository.parse_wasbs_uri(repository.artifact_uri)
    client = repository.client.get_container_client(container)  # Azure's clients are safe to share between threads

    def read(path: str, first: int, last: int) -> bytes:
        key = posixpath.join(root, path)
        try:
            data = client.download_blob(key, offset=first, length=last - first + 1).readall()
        except AzureError as exc:  # its text runs on with the request's id, time and XML reply: the first line
            reason = f"{getattr(exc, 'error_code', None) or type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            raise MlflowException(f"GET {container}/{key} (bytes {first}-{last}): {reason}") from exc
        return _whole_range(data, f"{container}/{key}", first, last)

    return read


def _whole_range(data: bytes, where: str, first: int, last: int) -> bytes:
    """``data``, unless it is longer than the range asked for: a store that ignored the range sent the whole file
    (the ranges asked for lie inside the file). A shorter answer is returned, for the caller to refuse as it does
    the other stores' (a pack replaced by a smaller file)."""
    if len(data) > last - first + 1:
        raise RangeNotServed(f"GET {where} (bytes {first}-{last}): {len(data)} bytes in reply")
    return data


class RangeNotServed(Exception):
    """The artifact server answered a ranged read with something else (see :func:`range_reader`)."""


def code_source():
    """The source MLflow records for a dataset built in code (``from_huggingface`` without a path)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.tracking.context import registry

    return CodeDatasetSource(tags=registry.resolve_tags())


def invalid_parameter_code():
    """MLflow's error code for a bad argument (what its own dataset constructors raise with)."""
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return INVALID_PARAMETER_VALUE


def request_session_module():
    """The module whose ``_cached_get_request_session(...)`` makes the ``requests`` session of MLflow's REST
    calls and artifact transfers (one per retry setting and process): see :mod:`._quick_ack`."""
    from mlflow.utils import request_utils

    return request_utils if callable(getattr(request_utils, "_cached_get_request_session", None)) else None


SESSION_FACTORY = "_cached_get_request_session"


def selection_indices(dataset):
    """The indices mapping of a ``datasets.Dataset`` after ``select``/``shuffle`` (None when it has none)."""
    return dataset._indices


def local_artifact_dir(artifact_uri: str) -> str | None:
    """The local folder behind an artifact URI when the store is a plain folder (``file:`` or a path): packs
    are then read in place, by offset, without a copy. None for any other store."""
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repository = artifact_repository(artifact_uri)
    return repository.artifact_dir if isinstance(repository, LocalArtifactRepository) else None
