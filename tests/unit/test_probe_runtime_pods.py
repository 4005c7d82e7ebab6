"""Which pods the probe runtime keeps running: after a re-list, only those still listed (a pod
deleted between two watches sends no DELETED event, and its processes must end anyway)."""

from __future__ import annotations

import threading
from pathlib import Path

from conformance.sandbox.probe_runtime import ProbeRuntime, Running


def pod(namespace: str, name: str, uid: str) -> dict[str, dict[str, str]]:
    return {"metadata": {"namespace": namespace, "name": name, "uid": uid}}


def test_a_relist_stops_the_pods_that_are_gone(tmp_path: Path) -> None:
    runtime = ProbeRuntime.__new__(ProbeRuntime)  # no cluster: only the bookkeeping is used
    runtime.directory, runtime.lock = tmp_path, threading.Lock()
    runtime.allocations, runtime.device_plugin_in_use, runtime.pod_resources = {}, {}, {}
    kept, gone, replaced = Running("ns/kept/1"), Running("ns/gone/2"), Running("ns/again/3")
    runtime.running = {r.key: r for r in (kept, gone, replaced)}
    # "again" was deleted and created anew under the same name: a new uid
    runtime.forget_all_but([pod("ns", "kept", "1"), pod("ns", "again", "4")])
    assert set(runtime.running) == {"ns/kept/1"}
    assert gone.stopped
    assert replaced.stopped
    assert not kept.stopped
