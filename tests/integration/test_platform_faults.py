"""Platform faults no `--break` names, and signals: a hung controller (its process stopped, so its
admission webhooks stop answering) fails the requirements it serves with a reason naming the
webhook, soon after the first timeout; SIGHUP, SIGINT and SIGTERM to `kaic run` mid-check and to
`kaic sandbox up` mid-start leave no object, namespace or process behind."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conformance import sandbox as sbx
from conformance.cli import main
from conformance.cluster import Cluster
from conformance.cluster.connect import WEBHOOK_ATTEMPTS
from conformance.cluster.labels import selector
from conformance.sandbox import processes
from tests.integration.conftest import interruptible
from tests.integration.test_metrics_checks import NO_PROMETHEUS

pytestmark = pytest.mark.sandbox

# Each try at a hung webhook waits out its timeout (10 s, the webhooks' default); a check ends
# after WEBHOOK_ATTEMPTS tries, well within 30 s of the first timeout.
WEBHOOK_TIMEOUT_S = 10
SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


@contextmanager
def hung(box: sbx.Sandbox, component: str) -> Iterator[None]:
    """The component's processes stopped (SIGSTOP): alive, listening, never answering."""
    pid = box.pids[component]
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def run_checks(box: sbx.Sandbox, out: Path, *patterns: str) -> dict[str, Any]:
    argv = ["run", "--kubeconfig", str(box.kubeconfig), "--output", str(out),
            "--profile", "batch"]  # fmt: skip
    for pattern in patterns:
        argv += ["--check", pattern]
    main(argv)
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data


# Not the shared sandbox: its controllers are stopped on purpose. One without Prometheus, which
# these checks do not use (the last of the tests on it to run).
@pytest.mark.box(**NO_PROMETHEUS)
@pytest.mark.parametrize(
    ("component", "patterns", "requirements"),
    [
        ("kueue", ("kueue.*", "gang.*"), {"kueue_admission", "gang_scheduling"}),
        ("lws", ("lws.*",), {"lws_gang_restart"}),
    ],
)
def test_a_hung_controller_fails_its_requirements_naming_the_webhook(
    box: sbx.Sandbox,
    tmp_path: Path,
    component: str,
    patterns: tuple[str, ...],
    requirements: set[str],
) -> None:
    with hung(box, component):
        data = run_checks(box, tmp_path / "out", *patterns)
    statuses = {r["id"]: r["status"] for r in data["requirements"] if r["id"] in requirements}
    assert statuses == dict.fromkeys(requirements, "failed")
    checks = [c for r in data["requirements"] if r["id"] in requirements for c in r["checks"]]
    assert not [c["id"] for c in checks if c["status"] == "error"], checks
    refused = [c for c in checks if c["status"] == "failed"]
    assert refused
    for check in refused:
        message = check["message"]
        assert 'admission webhook "' in message, message
        assert "did not answer within its timeout" in message, message
        assert f"in MutatingWebhookConfiguration {component}-" in message or (
            f"in ValidatingWebhookConfiguration {component}-" in message), message  # fmt: skip
        assert "Next: " in message
        assert "HTTPHeaderDict" not in message
        # the first try's timeout, then at most one more, plus the check's own setup
        limit = WEBHOOK_TIMEOUT_S + 30
        assert check["duration_s"] < limit, (check["id"], check["duration_s"], message)
    assert WEBHOOK_ATTEMPTS == 2


def leftovers(cluster: Cluster, run_id: str) -> list[str]:
    labels = selector(run_id)
    found = []
    for api_version, kind in (("v1", "Namespace"), ("v1", "Pod"), ("v1", "ConfigMap")):
        for obj in cluster.list_objects(api_version, kind, label_selector=labels):
            found.append(f"{kind}/{obj['metadata']['name']}")
    return found


def wait_for_a_pod_of(cluster: Cluster, run_id: str) -> None:
    cluster.wait_for("v1", "Pod", lambda pods: pods or None,
                     awaiting=f"a pod of run {run_id}", timeout_s=120,
                     label_selector=selector(run_id))  # fmt: skip


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_mid_check_cleans_up_and_writes_results(
    sandbox: sbx.Sandbox, admin: Cluster, tmp_path: Path, sig: signal.Signals
) -> None:
    run_id = f"it-{sig.name.lower()}-1"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--kubeconfig",
           str(sandbox.kubeconfig), "--check", "dra.claim-allocated", "--run-id", run_id,
           "--output", str(out)]  # fmt: skip
    proc = interruptible(cmd)
    try:
        wait_for_a_pod_of(admin, run_id)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=200)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert leftovers(admin, run_id) == []
    check = json.loads((out / "results.json").read_text())["requirements"]
    found = [c for r in check for c in r["checks"] if c["id"] == "dra.claim-allocated"]
    assert found, output
    assert found[0]["status"] in ("error", "failed")


def processes_naming(directory: Path) -> list[str]:
    """Processes whose command line mentions the directory (every sandbox component does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline:
            found.append(f"{entry.name}: {cmdline[:300]}")
    return found


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_during_sandbox_up_stops_what_it_started(
    tmp_path: Path, sig: signal.Signals
) -> None:
    directory = tmp_path / "box"
    cmd = [sys.executable, "-m", "conformance.cli", "sandbox", "up", "--dir", str(directory),
           "--without", *NO_PROMETHEUS["without"]]  # fmt: skip
    proc = interruptible(cmd)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the control plane is up, controllers are starting
            seen.append(line)
            if "starting kube-controller-manager" in line:
                break
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    output = "".join(seen) + rest
    assert proc.returncode == 130, output
    state = json.loads((directory / "state.json").read_text())
    assert "kube-apiserver" in state["pids"], output
    assert not [n for n, pid in state["pids"].items() if processes.alive(pid)], output
    assert processes_naming(directory) == [], output
    sbx.down(directory)


def test_sandbox_processes_can_be_stopped_by_sigterm(sandbox: sbx.Sandbox) -> None:
    """`up` holds stop signals back while it starts a process; the process itself must not
    inherit that mask, or `down`'s SIGTERM waits out its grace and kills it, orphaning the
    pods' processes the probe runtime would have stopped."""
    blocked = {}
    for name, pid in sandbox.pids.items():
        status = Path(f"/proc/{pid}/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("SigBlk:")), 16)  # fmt: skip
        held = [s.name for s in SIGNALS if mask & (1 << (s.value - 1))]
        if held:
            blocked[name] = held
    assert blocked == {}
