"""Real storage servers on 127.0.0.1 for the remote cache tests.

An S3-compatible server (moto's server mode, a real HTTP server speaking the S3
protocol, so s3fs and botocore run exactly as against a cloud store) and a plain
static HTTP server for read-only mirrors.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET = "affineur-test-secret-9f2c1d"
"""The S3 secret key the tests use; it must never show up in a log, report or cache file."""


@dataclass
class S3Server:
    url: str

    @property
    def env(self) -> dict[str, str]:
        """Credentials as the storage library reads them: from the environment."""
        return {
            "AWS_ACCESS_KEY_ID": "affineur-test-key",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="affineur-test-key",
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"cache-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def variant_setting(self, bucket: str, prefix: str = "team", mode: str = "") -> str:
        """The ``remote_cache`` block of a variant file pointing at ``bucket``."""
        return (
            "remote_cache:\n"
            f"  url: s3://{bucket}/{prefix}\n"
            + (f"  mode: {mode}\n" if mode else "")
            + f"  options: {{endpoint_url: {self.url!r}}}\n"
        )


@contextmanager
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """``directory`` served read-only over HTTP; yields its URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
