"""Nothing is left behind: a real API server, synthetic checks that create objects, then
failure, --keep-on-failure + `kaic cleanup`, and Ctrl-C in the middle of a check."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.cluster import Cluster, ConnectOptions, connect
from conformance.cluster.labels import selector
from tests.integration.conftest import interruptible

pytestmark = pytest.mark.sandbox

CHECKS = """
from conformance.checks import check

def make(kube):
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"},
                "data": {"a": "b"}})
    kube.apply({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "kaic-demo-" + kube.cluster.run_id}, "value": 1000})

@check("demo.creates-then-fails", requirements=["r"])
def test_creates_then_fails(kube):
    make(kube)
    assert False, "failing on purpose after creating objects"

@check("demo.creates-then-waits", requirements=["w"])
def test_creates_then_waits(kube):
    make(kube)
    print("OBJECTS-CREATED", flush=True)
    kube.cluster.wait_for("v1", "ConfigMap", lambda objs: None, awaiting="Ctrl-C",
                          timeout_s=300, namespace=kube.namespace)
"""

CATALOG = """
kind: RequirementCatalog
requirements:
  r: {category: c, source: kaic, description: d, checks: [demo.creates-then-fails]}
  w: {category: c, source: kaic, description: d, checks: [demo.creates-then-waits]}
"""
PROFILE = """
kind: Profile
name: demo
requirements: [{id: r, level: MUST}, {id: w, level: MUST}]
"""


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    (tmp_path / "test_demo.py").write_text(CHECKS)
    (tmp_path / "requirements.yaml").write_text(CATALOG)
    (tmp_path / "demo.yaml").write_text(PROFILE)
    return tmp_path


def leftovers(cluster: Cluster, run_id: str) -> list[str]:
    labels = selector(run_id)
    found = []
    for api_version, kind in (
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
    ):
        for obj in cluster.list_objects(api_version, kind, label_selector=labels):
            found.append(f"{kind}/{obj['metadata']['name']}")
    return found


def pytest_cmd(demo_dir: Path, kubeconfig: Path, run_id: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", str(demo_dir / "test_demo.py"), "-p", "no:cacheprovider",
        "-s", "--rootdir", str(demo_dir), "--kubeconfig", str(kubeconfig),
        "--profile", str(demo_dir / "demo.yaml"), "--run-id", run_id,
        "--output", str(demo_dir / "out"), *extra,
    ]  # fmt: skip


def results(demo_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((demo_dir / "out" / "results.json").read_text())
    return data


def test_failed_check_leaves_nothing_behind(demo_dir: Path, sandbox: Any) -> None:
    run_id = "it-fail-1"
    cmd = pytest_cmd(demo_dir, sandbox.kubeconfig, run_id, "--check", "demo.creates-then-fails")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    check = results(demo_dir)["requirements"][0]["checks"][0]
    assert check["status"] == "failed"
    assert "failing on purpose" in check["message"]
    assert any(o.startswith("PriorityClass/kaic-demo-") for o in check["evidence"]["objects"])
    cluster = connect(ConnectOptions(kubeconfig=str(sandbox.kubeconfig)), run_id)
    assert leftovers(cluster, run_id) == []


def test_keep_on_failure_then_kaic_cleanup(demo_dir: Path, sandbox: Any) -> None:
    run_id = "it-keep-1"
    cmd = pytest_cmd(
        demo_dir, sandbox.kubeconfig, run_id, "--check", "demo.creates-then-fails",
        "--keep-on-failure",
    )  # fmt: skip
    subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    cluster = connect(ConnectOptions(kubeconfig=str(sandbox.kubeconfig)), run_id)
    kept = leftovers(cluster, run_id)
    assert any(k.startswith("Namespace/") for k in kept)
    assert any(k.startswith("PriorityClass/") for k in kept)
    assert main(["cleanup", "--kubeconfig", str(sandbox.kubeconfig), "--run-id", run_id]) == 0
    assert leftovers(cluster, run_id) == []


def test_ctrl_c_in_the_middle_of_a_check_cleans_up(demo_dir: Path, sandbox: Any) -> None:
    run_id = "it-sigint-1"
    cmd = pytest_cmd(demo_dir, sandbox.kubeconfig, run_id, "--check", "demo.creates-then-waits")
    proc = interruptible(cmd)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the check prints once its objects exist
        seen.append(line)
        if "OBJECTS-CREATED" in line:
            break
    cluster = connect(ConnectOptions(kubeconfig=str(sandbox.kubeconfig)), run_id)
    assert len(leftovers(cluster, run_id)) == 3, "".join(seen)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=200)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert leftovers(cluster, run_id) == []
    check = results(demo_dir)["requirements"][1]["checks"][0]
    assert check["status"] in ("error", "failed")
