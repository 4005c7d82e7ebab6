"""Kueue admission checks pass on the sandbox and fail without Kueue, naming what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import MakeSandbox
from tests.integration.test_accelerator_checks import run, statuses

pytestmark = pytest.mark.sandbox

KUEUE = [
    "kueue.api-served", "kueue.admits-fitting-job", "kueue.holds-until-quota-frees",
    "kueue.namespace-selector-enforced",
]  # fmt: skip


def test_kueue_admission_passes_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "kueue.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(KUEUE, "passed")
    held = checks["kueue.holds-until-quota-frees"]["evidence"]["observed"]
    assert "insufficient unused quota for cpu" in held["second_waiting_because"]
    outsider = checks["kueue.namespace-selector-enforced"]["evidence"]["observed"]
    assert "doesn't match ClusterQueue selector" in outsider["outsider_waiting_because"]


def test_without_kueue_every_admission_check_fails(
    sandbox_factory: MakeSandbox, tmp_path: Path
) -> None:
    box = sandbox_factory(without=["kueue"])
    checks = run(box, tmp_path, "--check", "kueue.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(KUEUE, "failed")
    assert all("Kueue's API (kueue.x-k8s.io" in c["message"] for c in checks.values())
