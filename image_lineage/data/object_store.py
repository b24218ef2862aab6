"""Datasets in S3 or an S3-compatible store (MinIO, Ceph): ``s3://bucket/prefix`` where a folder is accepted.

Read with boto3, the AWS SDK that MLflow's own S3 artifact store uses: the credentials and the endpoint
come from the standard chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``,
``AWS_ENDPOINT_URL``, or ``MLFLOW_S3_ENDPOINT_URL`` as MLflow reads it) and are never logged. s3fs would
add aiobotocore, whose narrow botocore pins fight boto3's; listing and reading objects is all we need.

Two ways to read a prefix, both giving the digest the same files give in a local folder (a dataset copied from
a laptop to a bucket keeps its identity and its runs):

* streamed (:class:`ObjectTree`, for image folders): the listing is walked as a folder is, and each object is
  read into memory by the image pass (:func:`image_lineage.data.read.read_images`), never written to disk;
  its record is cached by (location, size, last-modified, ETag), so an unchanged prefix is listed, not read;
* mirrored (:func:`mirror_prefix`, for COCO folders and the ``imagefolder`` builder, which read files): into
  ``$IMAGE_LINEAGE_CACHE_DIR/s3/<bucket>/<prefix>`` (with the cache off, a temporary folder of the process,
  removed when it exits), each object fetched once per (bucket, key, ETag, size, last-modified), on a thread
  pool, each streamed to its file.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from image_lineage.core import config
from image_lineage.core.errors import LineageError

LOGGER = logging.getLogger(__name__)

SCHEME = "s3://"
READ_THREADS = 16
INLINE_OBJECTS = 200
CREDENTIAL_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str
    size: int
    last_modified: str
    version_id: str | None = None


def is_object_uri(location: str | Path) -> bool:
    return str(location).startswith(SCHEME)


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b/``): the prefix ends with ``/`` (a folder), or is empty."""
    bucket, _, prefix = uri[len(SCHEME):].partition("/")
    if not bucket:
        raise LineageError(f"{uri!r} names no bucket: write s3://<bucket>/<prefix>.")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def endpoint_url() -> str | None:
    return config.s3_endpoint()


def s3_client():
    """A client for the credentials and endpoint the environment names now (one per setting: boto3's
    default session would keep the first credentials it found for the life of the process)."""
    return client_for(config.s3_settings())


@functools.lru_cache(maxsize=8)
def client_for(settings: tuple):
    import boto3
    from botocore.config import Config

    # a few seconds to hear that the endpoint is wrong, not botocore's minutes of retries
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                    max_pool_connections=READ_THREADS)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url(), config=config)


def explain(error: Exception, uri: str) -> LineageError:
    """A botocore error as one line naming the URI and what to do; never a credential's value."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f" at {endpoint_url()}" if endpoint_url() else ""
    if isinstance(error, NoCredentialsError):
        return LineageError(f"{uri}: no S3 credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                            f"AWS_PROFILE), and AWS_ENDPOINT_URL for an S3-compatible store.")
    if isinstance(error, EndpointConnectionError):
        return LineageError(f"{uri}: the S3 endpoint{where} does not answer. Check AWS_ENDPOINT_URL or "
                            f"MLFLOW_S3_ENDPOINT_URL, and that the store is running.")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in CREDENTIAL_ERRORS:
            return LineageError(f"{uri}: the S3 store{where} refused the credentials ({code}). Set "
                                f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key that may read this bucket.")
        if code == "NoSuchBucket":
            return LineageError(f"{uri}: bucket {split_uri(uri)[0]!r} does not exist{where}. Check the name, or "
                                f"create it and upload the dataset there.")
    return LineageError(f"{uri}: S3 request failed ({error}). Nothing was logged; run again once the store answers.")


def list_objects(client, uri: str) -> list[StoredObject]:
    """Every object under the prefix, with ETag, size, last-modified and, in a versioned bucket, its version."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(uri)
    try:
        versioned = client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
        if versioned:
            pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
            found = [StoredObject(v["Key"], v["ETag"].strip('"'), v["Size"], v["LastModified"].isoformat(), v["VersionId"])
                     for page in pages for v in page.get("Versions", []) if v["IsLatest"]]
        else:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            found = [StoredObject(o["Key"], o["ETag"].strip('"'), o["Size"], o["LastModified"].isoformat())
                     for page in pages for o in page.get("Contents", [])]
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, uri) from None
    found = [o for o in found if not o.key.endswith("/")]  # "folder" placeholder objects hold nothing
    if not found:
        raise LineageError(f"no objects under {uri}. {what_is_there(client, bucket, prefix)}")
    return found


def what_is_there(client, bucket: str, prefix: str) -> str:
    """The prefixes one level up, so a mistyped prefix shows the right one."""
    parent = prefix.rstrip("/").rpartition("/")[0]
    parent = f"{parent}/" if parent else ""
    page = client.list_objects_v2(Bucket=bucket, Prefix=parent, Delimiter="/", MaxKeys=50)
    names = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return (f"Prefixes under s3://{bucket}/{parent}: {', '.join(n.rstrip('/') for n in names)}." if names
            else f"s3://{bucket}/{parent} holds no prefixes.")


@functools.lru_cache(maxsize=1)
def process_mirror_root() -> Path:
    """With the cache off: one temporary folder for this process's mirrors, removed when it exits (so a
    version's diff base is mirrored beside it, and nothing is left behind)."""
    folder = Path(tempfile.mkdtemp(prefix="image_lineage_s3_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def mirror_root() -> Path:
    """Mirrors live beside the image record cache (``$IMAGE_LINEAGE_CACHE_DIR/s3``)."""
    folder = config.cache_dir()
    return folder / "s3" if folder else process_mirror_root()


@dataclass
class Mirror:
    uri: str
    folder: Path | None  # the local copy of the prefix; None for a prefix streamed through the image pass
    objects: list[StoredObject]
    fetched: int  # objects read in this call (0 for an unchanged prefix)

    def to_dict(self) -> dict:
        return {"uri": self.uri, "objects": [asdict(o) for o in self.objects]}

    def source_objects(self) -> list[dict] | str:
        """What a dataset source records of the objects: each one's key, ETag and version id, or, past
        ``INLINE_OBJECTS`` (a source is one database field), the run artifact that lists them."""
        if len(self.objects) > INLINE_OBJECTS:
            return "s3_objects.json"
        return [{"key": o.key, "etag": o.etag, **({"version_id": o.version_id} if o.version_id else {})}
                for o in self.objects]


def mirror_prefix(uri: str) -> Mirror:
    """The prefix's objects as a local folder; objects already mirrored with the same ETag, size and
    last-modified are not read again, and local files no longer in the bucket are removed."""
    client = s3_client()
    bucket, prefix = split_uri(uri)
    objects = list_objects(client, uri)
    root = mirror_root()
    folder = root / bucket / prefix
    index_path = root / ".index" / bucket / f"{hashlib.sha256(prefix.encode()).hexdigest()[:24]}.json"
    known = json.loads(index_path.read_text()) if index_path.is_file() else {}
    wanted = {o.key[len(prefix):]: o for o in objects}
    stale = [rel for rel, o in wanted.items() if known.get(rel) != [o.etag, o.size, o.last_modified]
             or not (folder / rel).is_file()]
    for rel in set(known) - set(wanted):  # deleted from the bucket: gone from the mirror too
        (folder / rel).unlink(missing_ok=True)
    if stale:
        LOGGER.info("reading %d of %d objects under %s", len(stale), len(objects), uri)
        with ThreadPoolExecutor(READ_THREADS) as pool:
            list(pool.map(lambda rel: fetch(client, bucket, wanted[rel], folder / rel, uri), stale))
    index_path.parent.mkdir(parents=True, exist_ok=True)
    written = index_path.with_name(f"{index_path.name}.{os.getpid()}.{threading.get_ident()}")
    written.write_text(json.dumps({rel: [o.etag, o.size, o.last_modified] for rel, o in wanted.items()}))
    os.replace(written, index_path)  # whole or not at all, even with several processes (DDP ranks) at once
    return Mirror(uri, folder, objects, len(stale))


def fetch(client, bucket: str, stored: StoredObject, target: Path, uri: str) -> None:
    """One object, streamed into a temporary file beside ``target`` and renamed: a read cut short never
    leaves a partial image under its real name."""
    from botocore.exceptions import BotoCoreError, ClientError

    target.parent.mkdir(parents=True, exist_ok=True)
    extra = {"VersionId": stored.version_id} if stored.version_id else {"IfMatch": f'"{stored.etag}"'}
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")  # one per reader
    try:
        body = client.get_object(Bucket=bucket, Key=stored.key, **extra)["Body"]
        with open(partial, "wb") as out:
            shutil.copyfileobj(body, out, 1 << 20)
    except (ClientError, BotoCoreError) as exc:
        partial.unlink(missing_ok=True)
        raise explain(exc, f"s3://{bucket}/{stored.key}") from None
    os.replace(partial, target)


def list_prefixes(client, uri: str) -> list[str]:
    """The "folders" directly under ``uri`` (names, without the parent prefix)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(uri)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        return [p["Prefix"][len(prefix):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, uri) from None


# ---------------------------------------------------------------- streamed: objects read without a local copy


@dataclass(frozen=True)
class ObjectEntry:
    """One name under a prefix, as a folder walk sees it (the attributes of ``os.DirEntry`` a walk uses)."""

    name: str
    path: str  # s3://bucket/prefix/name
    folder: bool

    def is_dir(self) -> bool:
        return self.folder

    def is_file(self, follow_symlinks: bool = True) -> bool:
        return not self.folder

    def is_symlink(self) -> bool:
        return False


class ObjectTree:
    """A listed prefix as folders of objects: a version prefix is walked as a folder is, by the same code
    (:func:`image_lineage.data.folders.collect_candidates`), without a local copy."""

    def __init__(self, uri: str, objects: list[StoredObject]):
        self.uri = uri.rstrip("/")
        bucket, _ = split_uri(uri)
        self.objects = {f"s3://{bucket}/{o.key}": o for o in objects}
        self.children: dict[str, dict[str, bool]] = {}  # folder uri -> {name: is a folder}
        for location in self.objects:
            parent, _, name = location.rpartition("/")
            self.children.setdefault(parent, {})[name] = False
            while parent != self.uri and parent.startswith(self.uri + "/"):
                parent, _, name = parent.rpartition("/")
                self.children.setdefault(parent, {})[name] = True
        remember_objects(self.uri, self.objects)

    def entries(self, folder: str) -> list[ObjectEntry]:
        folder = str(folder).rstrip("/")
        return [ObjectEntry(name, f"{folder}/{name}", is_folder)
                for name, is_folder in sorted(self.children.get(folder, {}).items())]

    def mirror(self) -> Mirror:
        """The listing as a dataset source records it (no local folder)."""
        return Mirror(self.uri, None, list(self.objects.values()), 0)


# The identity (ETag, size, last-modified, version) of every object listed in this process, by location: the
# image pass keys its record cache on it, so an object read once is not read again while its ETag holds.
KNOWN_OBJECTS: dict[str, StoredObject] = {}


def remember_objects(uri: str, objects: dict[str, StoredObject]) -> None:
    """A new listing of ``uri``: what it holds now, and nothing it no longer holds (a deleted object is gone)."""
    under = f"{uri.rstrip('/')}/"
    for location in [known for known in KNOWN_OBJECTS if known.startswith(under) and known not in objects]:
        KNOWN_OBJECTS.pop(location, None)
    KNOWN_OBJECTS.update(objects)


def object_key(location: str) -> tuple[str, int, int, int, int]:
    """The record cache's key of an object, in the places of a file's (path, size, mtime, inode, ctime): its
    location, size, last-modified, and a number from its ETag and version (a new upload has a new ETag;
    objects never change in place, so no 'racy' window: ctime 0)."""
    stored = KNOWN_OBJECTS.get(location) or head_object(location)
    identity = hashlib.sha256(f"{stored.etag}\0{stored.version_id or ''}".encode()).digest()
    modified = int(datetime.fromisoformat(stored.last_modified).timestamp() * 1e9)
    return location, stored.size, modified, int.from_bytes(identity[:7], "big"), 0


def is_stored(location: str | Path) -> bool:
    """Whether a file is there: an object by the listings of this process, a file on disk."""
    return str(location) in KNOWN_OBJECTS if is_object_uri(location) else Path(location).is_file()


def head_object(location: str) -> StoredObject:
    """An object not listed in this process: its identity, asked of the store."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = location[len(SCHEME):].partition("/")
    try:
        head = s3_client().head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, location) from None
    stored = StoredObject(key, head["ETag"].strip('"'), head["ContentLength"], head["LastModified"].isoformat(),
                          head.get("VersionId"))
    KNOWN_OBJECTS[location] = stored
    return stored


def read_object(location: str) -> bytes:
    """One object's bytes, in memory (the version listed, when it was listed in this process)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = location[len(SCHEME):].partition("/")
    stored = KNOWN_OBJECTS.get(location)
    extra = {}
    if stored is not None:
        extra = {"VersionId": stored.version_id} if stored.version_id else {"IfMatch": f'"{stored.etag}"'}
    try:
        return s3_client().get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, location) from None
