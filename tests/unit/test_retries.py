"""The cluster layer retries throttling and transient server errors, with backoff."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from kubernetes import client

from conformance.cluster import Cluster
from conformance.cluster.connect import WEBHOOK_ATTEMPTS, retry_policy

VERSION = {
    "major": "1", "minor": "35", "gitVersion": "v1.35.4", "gitCommit": "x", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.26", "compiler": "gc",
    "platform": "linux/amd64",
}  # fmt: skip


class FlakyServer(BaseHTTPRequestHandler):
    """Answers /version with the statuses in `plan` first, then 200."""

    plan: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []
    message: ClassVar[str] = ""  # the Status message of error answers

    def do_GET(self) -> None:
        self.seen.append(self.path)
        status = self.plan.pop(0) if self.plan else 200
        error = {"kind": "Status", "code": status, "message": self.message}
        body = json.dumps(VERSION if status == 200 else error).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FlakyServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    FlakyServer.seen = []
    FlakyServer.message = ""
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def cluster_at(url: str) -> Cluster:
    cfg = client.Configuration()
    cfg.host = url
    cfg.retries = retry_policy(backoff_factor=0.001)
    return Cluster(cfg, context="test", run_id="r")


def test_throttling_and_server_errors_are_retried(server: str) -> None:
    FlakyServer.plan = [429, 503, 500]
    assert cluster_at(server).server_version() == "v1.35.4"
    assert FlakyServer.seen == ["/version/"] * 4


def test_persistent_errors_surface_after_the_retries(server: str) -> None:
    FlakyServer.plan = [503] * 20
    with pytest.raises(client.ApiException) as err:
        cluster_at(server).server_version()
    assert err.value.status == 503
    assert len(FlakyServer.seen) == 7  # the first try and 6 retries


def test_client_errors_are_not_retried(server: str) -> None:
    FlakyServer.plan = [404]
    with pytest.raises(client.ApiException):
        cluster_at(server).server_version()
    assert len(FlakyServer.seen) == 1


def test_a_failing_admission_webhook_is_tried_twice_not_seven_times(server: str) -> None:
    FlakyServer.plan = [500] * 20
    FlakyServer.message = (
        'Internal error occurred: failed calling webhook "vworkload.kb.io": failed to call '
        "webhook: context deadline exceeded"
    )
    with pytest.raises(client.ApiException) as err:
        cluster_at(server).server_version()
    assert err.value.status == 500
    assert "vworkload.kb.io" in err.value.body
    assert len(FlakyServer.seen) == WEBHOOK_ATTEMPTS == 2


def test_a_webhook_that_recovers_on_the_second_try_succeeds(server: str) -> None:
    FlakyServer.plan = [503, 500]
    FlakyServer.message = 'failed calling webhook "v.x.io": connection refused'
    assert cluster_at(server).server_version() == "v1.35.4"
    assert len(FlakyServer.seen) == 3  # the 503 is not the webhook's, the 500 its first failure
