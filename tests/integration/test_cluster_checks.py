"""cluster.reachable and cluster.version-supported against the sandbox's real API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.sandbox.build import cache_root

pytestmark = pytest.mark.sandbox


def run_kaic(sandbox: Any, out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["run", "--kubeconfig", str(sandbox.kubeconfig), "--output", str(out),
                 "--check", "cluster.*", *args])  # fmt: skip
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return code, data


def baseline(data: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in data["requirements"] if r["id"] == "cluster_baseline")


def test_cluster_checks_pass_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    code, data = run_kaic(sandbox, tmp_path, "--profile", "cncf-ai-v1.35")
    req = baseline(data)
    assert req["status"] == "passed", req
    checks = {c["id"]: c for c in req["checks"]}
    assert checks["cluster.reachable"]["evidence"]["observed"]["readyz"] == "ok"
    assert checks["cluster.version-supported"]["evidence"]["observed"]["server_version"].startswith(
        "v1.35."
    )
    assert data["cluster"]["version"].startswith("v1.35.")
    # The other requirements' checks were not selected: partial, never conformant.
    assert code == 3
    assert data["verdict"] == "partial"


def test_version_check_fails_against_another_minor(sandbox: Any, tmp_path: Path) -> None:
    _, data = run_kaic(sandbox, tmp_path, "--profile", "cncf-ai-v1.34")
    checks = {c["id"]: c for c in baseline(data)["checks"]}
    assert checks["cluster.reachable"]["status"] == "passed"
    failed = checks["cluster.version-supported"]
    assert failed["status"] == "failed"
    assert failed["message"].startswith(
        "expected Kubernetes 1.34.x for profile cncf-ai-v1.34; observed server version v1.35."
    )
    assert "--profile cncf-ai-v1.35" in failed["message"]


def test_minimum_version_profile_accepts_newer(sandbox: Any, tmp_path: Path) -> None:
    _, data = run_kaic(sandbox, tmp_path, "--profile", "batch")
    assert baseline(data)["status"] == "passed"


def test_parallel_run_merges_into_one_report(sandbox: Any, tmp_path: Path) -> None:
    _, data = run_kaic(sandbox, tmp_path, "--profile", "cncf-ai-v1.35", "-n", "2")
    assert [c["status"] for c in baseline(data)["checks"]] == ["passed", "passed"]


def test_kaic_run_without_kubeconfig_uses_a_fresh_sandbox(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env |= {"HOME": str(home), "KAIC_CACHE_DIR": str(cache_root().parent)}
    kaic = Path(sys.executable).parent / "kaic"
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(kaic), "run", "--check", "cluster.*", "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # partial: only cluster.* ran
    assert "No kubeconfig given: starting the local sandbox" in proc.stderr
    assert "Stopping the local sandbox" in proc.stderr
    said = " ".join(proc.stderr.split())  # the console wraps long lines
    # cluster.* needs none of the stack: neither started nor built
    assert ("without kueue, lws, dra-driver, prometheus, accelerator-exporter, prometheus-adapter,"
            " gateway, ai-gateway, autoscaler, kuberay, kubeflow-trainer, real-nodes: none of the"
            " selected checks uses them") in said  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    assert baseline(data)["status"] == "passed"
    state = home / ".local/state/kaic/sandbox"
    assert not state.exists(), "the sandbox it started must be gone"
