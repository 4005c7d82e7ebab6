"""Reports: results.json follows its schema and round-trips; JUnit names describe themselves."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from conformance.errors import KaicError
from conformance.profiles import Profile, load_profile
from conformance.report import junit, results_json, summary, write_reports
from conformance.results import CheckResult, Run, roll_up

UNIMPLEMENTED = "ai_inference"


def unimplemented() -> str:
    """A MUST of the sample profile that, there, no check verifies."""
    return UNIMPLEMENTED


def sample_profile() -> Profile:
    """cncf-ai-v1.35 as if one of its MUSTs had no check yet."""
    profile = load_profile("cncf-ai-v1.35")
    requirements = tuple(replace(r, checks=()) if r.id == UNIMPLEMENTED else r
                         for r in profile.requirements)  # fmt: skip
    return replace(profile, requirements=requirements)


def sample_run() -> Run:
    profile = sample_profile()
    results = {
        "cluster.reachable": CheckResult(
            "cluster.reachable", "passed", 0.2, observed={"readyz": "ok"}
        ),
        "cluster.version-supported": CheckResult(
            "cluster.version-supported",
            "failed",
            0.1,
            message="expected Kubernetes 1.35.x; observed v1.34.2",
            objects=["Node/n1"],
        ),
    }
    return Run(
        profile=profile.name,
        profile_title=profile.title,
        run_id="20260101-000000-abcd",
        cluster={"server": "https://127.0.0.1:6443", "version": "v1.34.2", "context": "c"},
        started="2026-01-01T00:00:00Z",
        finished="2026-01-01T00:00:01Z",
        duration_s=1.0,
        requirements=roll_up(profile, results),
    )


def test_results_json_matches_its_schema_and_round_trips(tmp_path: Path) -> None:
    run = sample_run()
    path = results_json.write(run, tmp_path / "results.json")
    data = json.loads(path.read_text())
    assert results_json.validation_errors(data) == []
    assert data["schema"] == "kaic.results/v1"
    assert data["verdict"] == "not-conformant"
    assert {"profile", "cluster", "started", "finished", "duration_s", "requirements"} <= set(data)
    check = data["requirements"][0]["checks"][1]
    assert set(check) >= {"id", "status", "duration_s", "message", "evidence"}
    assert results_json.load(path).to_json() == data


def test_schema_rejects_a_wrong_status(tmp_path: Path) -> None:
    data = sample_run().to_json()
    data["requirements"][0]["status"] = "great"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(KaicError, match=r"requirements/0/status: 'great' is not one of"):
        results_json.load(path)


def test_not_implemented_requirements_are_in_the_results_never_passed() -> None:
    data = sample_run().to_json()
    statuses = {r["id"]: r["status"] for r in data["requirements"]}
    assert statuses[unimplemented()] == "not-implemented"
    assert "passed" not in {s for rid, s in statuses.items() if rid != "cluster_baseline"}


def test_junit_names_are_requirement_slash_check(tmp_path: Path) -> None:
    tree = ET.parse(junit.write(sample_run(), tmp_path / "junit.xml"))
    cases = {c.get("name"): c for c in tree.iter("testcase")}
    assert "cluster_baseline/cluster.reachable" in cases
    failed = cases["cluster_baseline/cluster.version-supported"]
    failure = failed.find("failure")
    assert failure is not None
    assert "observed v1.34.2" in (failure.get("message") or "")
    assert cases[f"{unimplemented()}/not-implemented"].find("skipped") is not None
    suite = tree.getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "1"
    assert int(suite.get("tests") or 0) == len(cases)


def test_summary_shows_verdict_table_and_failure_messages() -> None:
    text = summary.render(sample_run())
    assert "**Verdict: not-conformant**" in text
    assert f"| `{unimplemented()}` | MUST | NOT IMPLEMENTED | - |" in text
    assert "### cluster_baseline/cluster.version-supported (failed)" in text
    assert "expected Kubernetes 1.35.x; observed v1.34.2" in text
    assert "`Node/n1`" in text


def test_write_reports_writes_the_four_files(tmp_path: Path) -> None:
    written = write_reports(sample_run(), tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["junit.xml", "report.html", "results.json", "summary.md"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("{not json", ":1: not valid JSON"), ('{"schema": "other"}', "not a kaic results file")],
)
def test_loading_a_bad_results_file_is_a_one_line_error(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(KaicError) as err:
        results_json.load(path)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
