"""cluster.reachable and cluster.version-supported against the sandbox's real API server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main

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
    # Other MUSTs have no checks yet: never conformant, never passed.
    assert code == 1
    assert data["verdict"] == "not-conformant"


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
