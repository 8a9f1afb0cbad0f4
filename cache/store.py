"""Result storage, the source of truth: one folder (or S3 prefix) per result key.

    <root>/<key>/signature.png   greyscale page for the near-duplicate verifier (written first)
    <root>/<key>/thumbnail.jpg
    <root>/<key>/result.json     written last: its presence means the result is complete

Objects are write-once: `put` creates atomically and never overwrites (a second writer of the
same key gets False back and the first writer's bytes stay), so concurrent or repeated writes are
idempotent and nobody ever reads a half-written object.

Errors: absence is `None` / False; any other backend failure raises StorageUnavailable.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator, Protocol
from urllib.parse import urlsplit

from .errors import StorageUnavailable
from .keys import is_valid_key, validate_key

logger = logging.getLogger(__name__)

RESULT = "result.json"
THUMBNAIL = "thumbnail.jpg"
SIGNATURE = "signature.png"
NAMES = frozenset({RESULT, THUMBNAIL, SIGNATURE})


def _check(key: str, name: str) -> None:
    validate_key(key)
    if name not in NAMES:
        raise ValueError(f"unknown object name {name!r}")


class ResultStore(Protocol):
    """Write-once object storage for results."""

    def get(self, key: str, name: str) -> bytes | None:
        """The object's bytes; None if absent. Raises StorageUnavailable, InvalidKey."""

    def exists(self, key: str, name: str) -> bool:
        """Whether the object exists. Raises StorageUnavailable, InvalidKey."""

    def put(self, key: str, name: str, body: bytes, *, content_type: str) -> bool:
        """Create the object atomically; False if it already existed (left unchanged)."""

    def iter_keys(self) -> Iterator[str]:
        """Keys of complete results (those with result.json). Raises StorageUnavailable."""

    def ping(self) -> None:
        """Raise StorageUnavailable unless the store can be read and written."""


class FileResultStore:
    """Results in a local directory (the default of `make run`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"<FileResultStore file://{self.root}>"

    def _path(self, key: str, name: str) -> Path:
        _check(key, name)
        return self.root / key / name

    def get(self, key: str, name: str) -> bytes | None:
        path = self._path(key, name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {path}: {exc}") from exc

    def exists(self, key: str, name: str) -> bool:
        path = self._path(key, name)
        try:
            path.stat()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat {path}: {exc}") from exc

    def put(self, key: str, name: str, body: bytes, *, content_type: str) -> bool:
        path = self._path(key, name)
        try:
            # Owner read/write, group read, nothing for others: results include every upload's
            # greyscale signature (mkstemp's 0600 already; link() keeps the mode).
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o640)
                # link() is an atomic create that fails if the name exists: readers see nothing
                # or the whole file, and the first writer wins (like S3's If-None-Match: *).
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {path}: {exc}") from exc

    def iter_keys(self) -> Iterator[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageUnavailable(f"cannot list {self.root}: {exc}") from exc
        for entry in entries:
            if is_valid_key(entry.name) and (Path(entry.path) / RESULT).is_file():
                yield entry.name

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".ping.", delete=True) as f:
                f.write(b"ok")
        except OSError as exc:
            raise StorageUnavailable(f"{self.root} is not writable: {exc}") from exc


class S3ResultStore:
    """Results in an S3 bucket under a prefix (AWS, SeaweedFS, Garage, moto...)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 client=None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config

            # One client per process (creating one per request costs 10-100 ms, docs/facts.md §5).
            # Short timeouts and one retry: a slow store becomes a 503, not a hung worker.
            client = boto3.client(
                "s3", endpoint_url=endpoint_url,
                config=Config(signature_version="s3v4", connect_timeout=2, read_timeout=10,
                              retries={"max_attempts": 2, "mode": "standard"}),
            )
        self.client = client

    def __repr__(self) -> str:
        return f"<S3ResultStore s3://{self.bucket}/{self.prefix}>"

    def _object(self, key: str, name: str) -> str:
        _check(key, name)
        return f"{self.prefix}/{key}/{name}" if self.prefix else f"{key}/{name}"

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def get(self, key: str, name: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        obj = self._object(key, name)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=obj)["Body"].read()
        except ClientError as exc:
            if self._code(exc) in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise StorageUnavailable(f"s3 get {obj}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"s3 get {obj}: {exc}") from exc

    def exists(self, key: str, name: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        obj = self._object(key, name)
        try:
            self.client.head_object(Bucket=self.bucket, Key=obj)
            return True
        except ClientError as exc:
            if self._code(exc) in {"NoSuchKey", "404", "NotFound"}:
                return False
            raise StorageUnavailable(f"s3 head {obj}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"s3 head {obj}: {exc}") from exc

    def put(self, key: str, name: str, body: bytes, *, content_type: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        obj = self._object(key, name)
        try:
            # Conditional create: 412 when the object exists, so a retry or a racing worker
            # never overwrites (docs/facts.md §5).
            self.client.put_object(Bucket=self.bucket, Key=obj, Body=body, ContentType=content_type,
                                   IfNoneMatch="*")
            return True
        except ClientError as exc:
            if self._code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}:
                return False
            raise StorageUnavailable(f"s3 put {obj}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"s3 put {obj}: {exc}") from exc

    def iter_keys(self) -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        base = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
            for page in pages:
                for item in page.get("Contents", []):
                    rest = item["Key"][len(base):]
                    key, _, name = rest.partition("/")
                    if name == RESULT and is_valid_key(key):
                        yield key
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"s3 list s3://{self.bucket}/{base}: {exc}") from exc

    def ping(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"s3 bucket {self.bucket}: {exc}") from exc


def from_url(url: str, *, endpoint_url: str | None = None) -> FileResultStore | S3ResultStore:
    """`file://DIR` (relative: `file://var/results`; absolute: `file:///srv/results`) or
    `s3://bucket/prefix`. The S3 endpoint falls back to AWS_ENDPOINT_URL (boto3 reads it)."""
    if url.startswith("file://"):
        path = url[len("file://"):]
        if not path:
            raise ValueError("file:// storage URL needs a directory")
        return FileResultStore(path)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"s3 storage URL needs a bucket: {url!r}")
        return S3ResultStore(parts.netloc, parts.path, endpoint_url=endpoint_url or None)
    raise ValueError(f"unsupported storage URL {url!r}: use file://DIR or s3://bucket/prefix")
