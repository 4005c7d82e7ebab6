"""The meter behind each check's `timing`: requests and watches counted, time blocked on the
cluster counted once however nested, polls counted."""

from __future__ import annotations

import time

import pytest
import urllib3
from kubernetes import client

from conformance.cluster import meter
from conformance.cluster.client import _MeteredApiClient
from conformance.cluster.wait import WaitTimeout, poll_until
from tests.unit.test_cli import free_port


def test_nested_waits_count_once() -> None:
    m = meter.reset()
    with meter.blocked():
        time.sleep(0.05)
        with meter.blocked():
            time.sleep(0.05)
    assert 0.1 <= m.cluster_wait_s < 0.5
    time.sleep(0.05)  # not blocked: not counted
    assert m.cluster_wait_s < 0.5
    assert meter.current() is m


def test_requests_and_watches_are_counted_and_timed() -> None:
    m = meter.reset()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused at once
    config.retries = False
    api = _MeteredApiClient(config)
    for url in ("/api/v1/pods", "/api/v1/pods?watch=True"):
        with pytest.raises(urllib3.exceptions.HTTPError):  # refused
            api.call_api("GET", config.host + url)
    assert (m.requests, m.watches) == (2, 1)
    assert m.cluster_wait_s > 0
    assert meter.reset().to_json() == {
        "cluster_wait_s": 0, "api_requests": 0, "watches": 0, "polls": 0,
    }  # fmt: skip


def test_polls_are_counted() -> None:
    m = meter.reset()
    with pytest.raises(WaitTimeout):
        poll_until(lambda: (None, "nothing"), awaiting="x", timeout_s=0.25, interval_s=0.1)
    assert m.polls == 3  # at 0, 0.1 and 0.2 s; a fourth would end past the timeout
    assert m.cluster_wait_s >= 0.2
