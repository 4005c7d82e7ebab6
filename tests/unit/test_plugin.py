"""The pytest plugin end to end on synthetic checks (no cluster): outcomes, selection, xdist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

CHECKS = """
import pytest
from conformance.checks import check
from conformance.failures import fail, not_applicable

@pytest.fixture
def broken_cleanup():
    yield
    raise RuntimeError("could not delete Namespace/x")

@check("demo.passes", requirements=["baseline"])
def test_passes(evidence):
    evidence.observe("answer", 42)
    evidence.object("Pod/ns/probe")

@check("demo.fails", requirements=["baseline"])
def test_fails():
    fail(expected="3 pods Running", observed="1 Running, 2 Pending", next_step="kubectl describe")

@check("demo.asserts", requirements=["other"])
def test_asserts():
    assert 1 == 2, "plain assertion"

@check("demo.errors", requirements=["other"])
def test_errors():
    raise RuntimeError("API unreachable")

@check("demo.skips", requirements=["conditional"])
def test_skips():
    not_applicable("no-autoscaler", "no cluster autoscaler found")

@check("demo.skips-anyhow", requirements=["other"])
def test_skips_anyhow():
    pytest.skip("nothing to see")

@check("demo.skips-unlisted", requirements=["other"])
def test_skips_unlisted():
    not_applicable("no-autoscaler", "not this requirement's condition")

@check("demo.cleanup-fails", requirements=["cleanup"])
def test_cleanup_fails(broken_cleanup):
    pass

def test_not_a_check():
    pass
"""

CATALOG = """
kind: RequirementCatalog
requirements:
  baseline: {category: c, source: kaic, description: d, checks: [demo.passes, demo.fails]}
  other: {category: c, source: kaic, description: d,
          checks: [demo.asserts, demo.errors, demo.skips-anyhow, demo.skips-unlisted]}
  conditional: {category: c, source: kaic, description: d, checks: [demo.skips],
                condition: an autoscaler exists,
                not_applicable_when: {no-autoscaler: The platform has no autoscaler.}}
  cleanup: {category: c, source: kaic, description: d, checks: [demo.cleanup-fails]}
  missing: {category: c, source: kaic, description: d, checks: []}
"""

PROFILE = """
kind: Profile
name: demo
requirements:
  - {id: baseline, level: MUST}
  - {id: other, level: SHOULD}
  - {id: conditional, level: MUST}
  - {id: cleanup, level: SHOULD}
  - {id: missing, level: SHOULD}
"""


@pytest.fixture
def demo(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_demo=CHECKS)
    profiles = pytester.mkdir("profiles")
    (profiles / "requirements.yaml").write_text(CATALOG)
    (profiles / "demo.yaml").write_text(PROFILE)
    return profiles / "demo.yaml"


def run(pytester: pytest.Pytester, profile: Path, *args: str, subprocess: bool = False) -> Any:
    out = pytester.path / "out"
    argv = ["--profile", str(profile), "--output", str(out), "--kubeconfig", "/nonexistent", *args]
    runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    result = runner(*argv)
    results = out / "results.json"
    data = json.loads(results.read_text()) if results.exists() else None
    return result, data


def checks_of(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for r in data["requirements"] for c in r["checks"]}


def test_outcomes_roll_up_into_results(pytester: pytest.Pytester, demo: Path) -> None:
    result, data = run(pytester, demo)
    checks = checks_of(data)
    assert {k: v["status"] for k, v in checks.items()} == {
        "demo.passes": "passed",
        "demo.fails": "failed",
        "demo.asserts": "failed",
        "demo.errors": "error",
        "demo.skips": "skipped",
        "demo.skips-anyhow": "error",
        "demo.skips-unlisted": "error",
        "demo.cleanup-fails": "error",
    }
    assert checks["demo.skips"]["condition"] == "no-autoscaler"
    # the reason as the check gave it, not prefixed with pytest's name for the skip
    assert checks["demo.skips"]["message"] == "no cluster autoscaler found"
    assert checks["demo.skips-anyhow"]["message"] == (
        "kaic skipped demo.skips-anyhow without naming a not-applicable condition: nothing to see"
    )
    assert (
        "for 'no-autoscaler', a condition none of its requirements lists"
        in (checks["demo.skips-unlisted"]["message"])
    )
    conditional = next(r for r in data["requirements"] if r["id"] == "conditional")
    assert conditional["not_applicable_when"] == {
        "no-autoscaler": "The platform has no autoscaler."
    }
    assert checks["demo.fails"]["message"] == (
        "expected 3 pods Running; observed 1 Running, 2 Pending. Next: kubectl describe"
    )
    assert "plain assertion" in checks["demo.asserts"]["message"]
    assert checks["demo.errors"]["message"] == "while running: RuntimeError: API unreachable"
    assert "while cleaning up" in checks["demo.cleanup-fails"]["message"]
    assert checks["demo.passes"]["evidence"] == {
        "objects": ["Pod/ns/probe"],
        "observed": {"answer": 42},
    }
    statuses = {r["id"]: r["status"] for r in data["requirements"]}
    assert statuses == {
        "baseline": "failed",
        "other": "failed",
        "conditional": "not-applicable",
        "cleanup": "error",
        "missing": "not-implemented",
    }
    assert data["verdict"] == "not-conformant"
    assert any("could not connect after the run" in n for n in data["notes"])
    result.assert_outcomes(passed=3, failed=3, errors=1, skipped=3)


def test_check_and_skip_select_by_glob(pytester: pytest.Pytester, demo: Path) -> None:
    _, data = run(
        pytester, demo, "--check", "demo.*s", "--skip", "demo.errors", "--skip", "demo.clean*"
    )
    assert set(checks_of(data)) == {"demo.passes", "demo.fails", "demo.asserts", "demo.skips"}
    statuses = {r["id"]: r["status"] for r in data["requirements"]}
    assert statuses["cleanup"] == "not-run"


def test_unknown_check_id_is_a_usage_error(pytester: pytest.Pytester, demo: Path) -> None:
    result, data = run(pytester, demo, "--check", "demo.nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--check demo.nope: unknown check id*"])
    assert data is None


def test_unknown_profile_is_a_usage_error(pytester: pytest.Pytester, demo: Path) -> None:
    result = pytester.runpytest("--profile", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown profile 'nope'*"])


def test_results_from_xdist_workers_merge(pytester: pytest.Pytester, demo: Path) -> None:
    result, data = run(pytester, demo, "-n", "2", subprocess=True)
    assert data is not None, result.stderr.str()
    assert len(checks_of(data)) == 8
    assert checks_of(data)["demo.passes"]["evidence"]["observed"] == {"answer": 42}
    assert checks_of(data)["demo.skips"]["condition"] == "no-autoscaler"  # from a worker
    assert data["run_id"]


def test_plugin_is_inert_without_kaic_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_help_works_without_a_cluster(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    for flag in (
        "--kubeconfig",
        "--in-cluster",
        "--profile",
        "--allocation-mode",
        "--timeout-scale",
        "--keep-on-failure",
        "--accelerator",
    ):
        result.stdout.fnmatch_lines([f"*{flag}*"])
