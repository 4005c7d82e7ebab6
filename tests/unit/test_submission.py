"""kaic submission: PRODUCT.yaml in the public template's exact shape; the ConformanceReport."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.cli import main
from conformance.errors import KaicError
from conformance.profiles import load_profile
from conformance.report import results_json
from conformance.results import CheckResult, RequirementResult, Run, roll_up
from conformance.submission import bundle, checklist, conformance_report, product

TEMPLATE_VERSIONS = ("1.33", "1.34", "1.35", "1.36")
METADATA = {
    "platformName": "Acme AI Cloud",
    "platformVersion": "2.4",
    "vendorName": "Acme",
    "websiteUrl": "https://acme.example",
    "repoUrl": "https://github.com/acme/ai",
    "documentationUrl": "https://docs.acme.example",
    "productLogoUrl": "https://acme.example/logo.svg",
    "description": "Managed Kubernetes for AI",
    "contactEmailAddress": "conformance@acme.example",
    "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.35/acme",
}


def profile_run(version: str, statuses: tuple[str, ...] = ("passed",)) -> Run:
    """A run of cncf-ai-v<version> in which the n-th check gets statuses[n % len]."""
    profile = load_profile(f"cncf-ai-v{version}")
    ids = [c for req in profile.requirements for c in req.checks]
    results = {}
    for n, check_id in enumerate(dict.fromkeys(ids)):
        status: Any = statuses[n % len(statuses)]
        message = "" if status == "passed" else f"{check_id} {status}: expected x; observed y"
        results[check_id] = CheckResult(check_id, status, 0.1, message=message)
    return Run(
        profile=profile.name,
        profile_title=profile.title,
        run_id="20261124-000000-abcd",
        cluster={"server": "https://127.0.0.1:6443", "version": f"v{version}.1"},
        started="2026-11-24T00:00:00Z",
        finished="2026-11-24T00:01:00Z",
        duration_s=60.0,
        requirements=roll_up(profile, results),
        kaic_version="0.1.0",
    )


def write_results(tmp_path: Path, run: Run) -> Path:
    return results_json.write(run, tmp_path / "results.json")


def template(version: str) -> dict[str, Any]:
    path = checklist.checklists_dir() / f"AIConformance-{version}.yaml"
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.mark.parametrize("version", TEMPLATE_VERSIONS)
def test_product_yaml_has_the_templates_exact_shape(tmp_path: Path, version: str) -> None:
    run = profile_run(version, ("passed", "failed", "skipped", "error"))
    done = bundle.write_submission(
        write_results(tmp_path, run), version, METADATA, tmp_path / "out", ["kaic"]
    )
    written = yaml.safe_load((done.directory / "PRODUCT.yaml").read_text())
    tpl = template(version)
    assert list(written) == list(tpl) == ["metadata", "spec"]
    assert list(written["metadata"]) == list(tpl["metadata"])
    assert written["metadata"]["kubernetesVersion"] == f"v{version}"
    for key in tpl["metadata"]:
        if key != "kubernetesVersion":
            assert written["metadata"][key] == METADATA[key]
    assert list(written["spec"]) == list(tpl["spec"])
    junit_cases = {
        case.get("name")
        for case in ET.parse(done.directory / "results" / "junit.xml").iter("testcase")
    }
    for category, items in tpl["spec"].items():
        got = written["spec"][category]
        assert [i["id"] for i in got] == [i["id"] for i in items]
        for want, item in zip(items, got, strict=True):
            assert tuple(item) == checklist.ITEM_KEYS == tuple(want)
            assert (item["description"], item["level"]) == (want["description"], want["level"])
            assert item["status"] in (*checklist.STATUSES, "")
            assert isinstance(item["evidence"], list)
            for ref in item["evidence"]:
                assert ref.startswith("file://results/junit.xml#")
                assert ref.removeprefix("file://results/junit.xml#") in junit_cases
            if item["status"] in ("N/A", ""):
                assert item["notes"], f"{item['id']}: N/A and undecided need a justification"


def test_every_template_version_is_listed_and_1_37_has_none() -> None:
    assert checklist.available_versions()[: len(TEMPLATE_VERSIONS)] == list(TEMPLATE_VERSIONS)
    with pytest.raises(KaicError, match=r"no public checklist template for v1\.37 .*1\.36"):
        checklist.load_checklist("1.37")
    assert checklist.normalize_version("v1.35") == "1.35"
    with pytest.raises(KaicError, match="expected a Kubernetes minor version"):
        checklist.normalize_version("1.35.2")


def requirement(status: Any, checks: list[tuple[str, Any]], **kw: Any) -> RequirementResult:
    return RequirementResult(
        id=kw.pop("id", "dra_support"),
        level=kw.pop("level", "MUST"),
        status=status,
        checks=[CheckResult(c, s, message=f"{c} says {s}") for c, s in checks],
        **kw,
    )


def test_status_mapping() -> None:
    run = profile_run("1.35")
    fill = product.fill_status
    status, evidence, notes = fill(requirement("passed", [("dra.a", "passed")]), run)
    assert status == "Implemented"
    assert evidence == ["file://results/junit.xml#dra_support/dra.a"]
    assert "dra.a" in notes
    assert run.run_id in notes
    skip = requirement("not-applicable", [("dra.a", "skipped")], reason="dra.a: no MIG offered")
    assert fill(skip, run)[0::2] == ("N/A", "dra.a: no MIG offered")
    partial = requirement("failed", [("dra.a", "passed"), ("dra.b", "failed")], reason="dra.b: x")
    status, _, notes = fill(partial, run)
    assert status == "Partially Implemented"
    assert "passed: dra.a" in notes
    assert "failed: dra.b" in notes
    failed = requirement("failed", [("dra.a", "failed"), ("dra.b", "error")], reason="dra.a: y")
    assert fill(failed, run)[0::2] == ("Not Implemented", "Failed: dra.a: y")
    for undecided in ("error", "not-implemented", "not-run"):
        status, _, notes = fill(requirement(undecided, [("dra.a", "error")]), run)
        assert (status, bool(notes)) == ("", True)
    assert fill(None, run)[0] == ""


def test_unfilled_metadata_and_undecided_items_are_reported(tmp_path: Path) -> None:
    run = profile_run("1.35", ("passed", "error"))
    only = {"platformName": "Acme", "vendorName": "Acme"}
    done = bundle.write_submission(write_results(tmp_path, run), None, only, None, ["kaic"])
    assert done.directory == Path("submissions/v1.35/acme")
    assert "contactEmailAddress" in done.product.unfilled_metadata
    assert "platformName" not in done.product.unfilled_metadata
    errored = [r.id for r in run.requirements if r.status in ("error", "not-implemented")]
    assert errored
    assert sorted(line.split(" ")[0] for line in done.product.undecided) >= sorted(errored)
    readme = (done.directory / "README.md").read_text()
    assert "## To decide by hand" in readme
    assert "kaic run --profile cncf-ai-v1.35" in readme


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_a_run_of_another_profile_is_refused(tmp_path: Path) -> None:
    results = write_results(tmp_path, profile_run("1.34"))
    with pytest.raises(KaicError, match=r"profile 'cncf-ai-v1\.34'.*cncf-ai-v1\.35"):
        bundle.write_submission(results, "1.35", METADATA, None, ["kaic"])


def report_of(*reqs: RequirementResult) -> dict[str, Any]:
    run = profile_run("1.35")
    run.requirements = list(reqs)
    return conformance_report.build_report(run, {"organization": "Acme"})["profiles"][0]


def test_conformance_report_core_and_extended() -> None:
    must_ok = requirement("passed", [("a", "passed")], id="m1")
    should_ok = requirement("passed", [("b", "passed")], id="s1", level="SHOULD")
    should_na = requirement("not-applicable", [("c", "skipped")], id="s2", level="SHOULD")
    got = report_of(must_ok, should_ok, should_na)
    assert got["core"] == {
        "result": "success",
        "statistics": {"Passed": 1, "Skipped": 0, "Failed": 0},
    }
    assert got["extended"]["result"] == "success"
    assert got["extended"]["supportedFeatures"] == ["s1"]
    assert got["extended"]["unsupportedFeatures"] == ["s2"]
    assert got["summary"].startswith("Core tests succeeded")


def test_conformance_report_partial_and_failure() -> None:
    conditional_na = requirement(
        "not-applicable", [("a", "skipped")], id="m1", condition="offers HPA"
    )
    unconditional_na = requirement("not-applicable", [("b", "skipped")], id="m2")
    not_run = requirement("not-run", [], id="m3")
    got = report_of(conditional_na, unconditional_na, not_run)["core"]
    assert got["result"] == "partial"
    assert got["statistics"] == {"Passed": 0, "Skipped": 2, "Failed": 0}
    assert got["skippedTests"] == ["m2", "m3"]
    assert got["notApplicable"] == ["m1"]
    errored = requirement("error", [("c", "error")], id="m4")
    got = report_of(conditional_na, errored)["core"]
    assert (got["result"], got["failedTests"]) == ("failure", ["m4"])


def test_submission_command_writes_the_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_results(tmp_path, profile_run("1.36"))
    out = tmp_path / "sub"
    code = main(
        ["submission", str(results), "--platform-name", "Acme", "--vendor", "Acme Inc",
         "--contact-email", "a@acme.example", "--output", str(out)]
    )  # fmt: skip
    assert code == 0
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == [
        "PRODUCT.yaml",
        "README.md",
        "conformance-report.yaml",
        "results/junit.xml",
        "results/results.json",
        "results/summary.md",
    ]
    doc = yaml.safe_load((out / "PRODUCT.yaml").read_text())
    assert doc["metadata"]["vendorName"] == "Acme Inc"
    assert doc["metadata"]["contactEmailAddress"] == "a@acme.example"
    report = yaml.safe_load((out / "conformance-report.yaml").read_text())
    assert report["kind"] == "ConformanceReport"
    assert report["profiles"][0]["name"] == "cncf-ai-v1.36"
    assert "metadata to fill in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--version", "1.37"], "no public checklist template for v1.37"),
        (["--version", "one"], "expected a Kubernetes minor version"),
        (["--version", "1.33"], "a v1.33 submission needs a run of 'cncf-ai-v1.33'"),
    ],
)
def test_submission_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    results = write_results(tmp_path, profile_run("1.35"))
    code = main(["submission", str(results), "--platform-name", "A", "--vendor", "B", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_submission_of_a_non_checklist_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = profile_run("1.35")
    run.profile = "batch"
    results = write_results(tmp_path, run)
    assert main(["submission", str(results), "--platform-name", "A", "--vendor", "B"]) == 2
    assert "is not a CNCF checklist profile" in capsys.readouterr().err
