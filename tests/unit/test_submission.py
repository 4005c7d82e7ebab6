"""kaic submission: a PRODUCT.yaml in the template's exact shape that the CNCF validator's rules
accept, the evidence files it cites, honest statuses, refusals; the ConformanceReport."""

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
from conformance.submission import bundle, checklist, conformance_report, product, validate

TEMPLATE_VERSIONS = ("1.33", "1.34", "1.35", "1.36", "1.37")
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
FLAGS = [
    "--platform-name", "Acme AI Cloud", "--vendor", "Acme", "--platform-version", "2.4",
    "--website-url", "https://acme.example", "--documentation-url", "https://docs.acme.example",
    "--product-logo-url", "https://acme.example/logo.svg", "--description", "Managed AI",
    "--contact-email", "ai@acme.example",
    "--k8s-conformance-url", "https://github.com/cncf/k8s-conformance/tree/master/v1.36/acme",
]  # fmt: skip
MANIFEST = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "probe", "namespace": "ns"},
    "spec": {"containers": [{"name": "c", "image": "ghcr.io/kaic-dev/kaic-probe:0.1.0"}]},
}


def profile_run(
    version: str, statuses: tuple[str, ...] = ("passed",), overrides: dict[str, Any] | None = None
) -> Run:
    """A run of cncf-ai-v<version> in which the n-th check gets statuses[n % len] (or its
    override)."""
    profile = load_profile(f"cncf-ai-v{version}")
    ids = [c for req in profile.requirements for c in req.checks]
    results = {}
    for n, check_id in enumerate(dict.fromkeys(ids)):
        status: Any = (overrides or {}).get(check_id, statuses[n % len(statuses)])
        message = "" if status == "passed" else f"{check_id} {status}: expected x; observed y"
        results[check_id] = CheckResult(
            check_id, status, 0.1, message=message, objects=["Pod/ns/probe"],
            observed={"count": n}, manifests=[MANIFEST],
        )  # fmt: skip
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


# A run on a cluster without a cluster autoscaler: every check passes but the autoscaler's.
NO_AUTOSCALER = {"cluster-autoscaling.accelerator-group": "skipped"}


def write_results(tmp_path: Path, run: Run) -> Path:
    return results_json.write(run, tmp_path / "results.json")


def submit(tmp_path: Path, run: Run, **kw: Any) -> bundle.Submission:
    out = tmp_path / "submissions" / f"v{run.profile.removeprefix('cncf-ai-v')}" / "acme"
    return bundle.write_submission(
        write_results(tmp_path, run), None, kw.pop("metadata", METADATA), out, ["kaic"], **kw
    )


def template(version: str) -> dict[str, Any]:
    path = checklist.checklists_dir() / f"AIConformance-{version}.yaml"
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def written_items(done: bundle.Submission) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((done.directory / "PRODUCT.yaml").read_text())
    return {item["id"]: item for items in doc["spec"].values() for item in items}


@pytest.mark.parametrize("version", TEMPLATE_VERSIONS)
def test_product_yaml_has_the_templates_shape_and_the_validators_keys(
    tmp_path: Path, version: str
) -> None:
    done = submit(tmp_path, profile_run(version, ("passed", "failed", "skipped", "error")),
                  draft=True)  # fmt: skip
    written = yaml.safe_load((done.directory / "PRODUCT.yaml").read_text())
    tpl = template(version)
    assert list(written) == list(tpl) == ["metadata", "spec"]
    # every template key in its order, plus what the validator requires beyond the template
    assert list(written["metadata"])[: len(tpl["metadata"])] == list(tpl["metadata"])
    assert set(written["metadata"]) == set(tpl["metadata"]) | set(validate.METADATA_FIELDS)
    assert written["metadata"]["kubernetesVersion"] == f"v{version}"
    for key, value in METADATA.items():
        assert written["metadata"][key] == value
    assert list(written["spec"]) == list(tpl["spec"])
    for category, items in tpl["spec"].items():
        got = written["spec"][category]
        assert [i["id"] for i in got] == [i["id"] for i in items]
        for want, item in zip(items, got, strict=True):
            assert tuple(item) == checklist.ITEM_KEYS == tuple(want)
            assert (item["description"], item["level"]) == (want["description"], want["level"])
            assert item["status"] in (*checklist.STATUSES, "")
            for ref in item["evidence"]:
                assert "://" not in ref, ref
                assert "#" not in ref, ref
                assert (done.directory / ref).is_file(), ref
            if item["status"] in ("N/A", ""):
                assert item["notes"], f"{item['id']}: N/A and undecided need a justification"
            if not item["status"]:
                assert item["evidence"] == [], "the validator skips a SHOULD only without evidence"


def test_a_run_without_an_autoscaler_passes_every_offline_rule_but_its_na(tmp_path: Path) -> None:
    done = submit(tmp_path, profile_run("1.36", overrides=NO_AUTOSCALER))
    assert done.validator_findings == [
        "Requirement 'cluster_autoscaling' is MUST level but status is 'N/A'. "
        "It must be 'Implemented'."
    ]
    item = written_items(done)["cluster_autoscaling"]
    assert item["status"] == "N/A"
    assert "cncf/k8s-ai-conformance#46" in item["notes"]
    assert any("cluster_autoscaling" in c for c in done.product.caveats)
    readme = (done.directory / "README.md").read_text()
    assert "cncf/k8s-ai-conformance#46" in readme


def test_a_run_with_every_check_passed_passes_every_offline_rule(tmp_path: Path) -> None:
    done = submit(tmp_path, profile_run("1.36"))
    assert done.validator_findings == []
    assert validate.validate(done.directory / "PRODUCT.yaml",
                             checklist.load_checklist("1.36").path) == []  # fmt: skip


def junit_cases(path: Path) -> dict[str, str]:
    """testcase name -> passed / skipped / failure / error"""
    out = {}
    for case in ET.parse(path).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        out[str(case.get("name"))] = kinds[0] if kinds else "passed"
    return out


def test_implemented_cites_only_checks_that_passed(tmp_path: Path) -> None:
    skipped = {"operator.controller-ready": "skipped"}
    done = submit(tmp_path, profile_run("1.36", overrides={**NO_AUTOSCALER, **skipped}))
    item = written_items(done)["robust_controller"]
    assert item["status"] == "Implemented"
    assert item["evidence"] == [
        "results/robust_controller.md",
        "results/robust_controller/junit.xml",
    ]
    cases = junit_cases(done.directory / item["evidence"][1])
    assert "robust_controller/operator.controller-ready" not in cases
    assert set(cases.values()) == {"passed"}
    assert len(cases) == 4
    assert "not cited: operator.controller-ready (skipped)" in item["notes"]
    text = (done.directory / "results/robust_controller.md").read_text()
    assert "Not cited for this status: operator.controller-ready (skipped" in text
    # the whole run's junit.xml keeps every testcase
    assert junit_cases(done.directory / "results/junit.xml")[
        "robust_controller/operator.controller-ready"] == "skipped"  # fmt: skip


def test_figures_are_svg_files_the_requirement_file_shows(tmp_path: Path) -> None:
    split = {"split": {"weights": {"a": 70, "b": 30}, "counts": {"a": 69, "b": 31}}}
    run = profile_run("1.36")
    for req in run.requirements:
        for check in req.checks:
            if check.id == "gateway-api.weighted-split":
                check.observed = split
    done = submit(tmp_path, run)
    svg = done.directory / "results/ai_inference/gateway-api.weighted-split-weighted-split.svg"
    assert svg.read_text().startswith("<svg")
    text = (done.directory / "results/ai_inference.md").read_text()
    assert "](ai_inference/gateway-api.weighted-split-weighted-split.svg)" in text


def test_per_check_evidence_says_what_was_deployed_and_observed(tmp_path: Path) -> None:
    done = submit(tmp_path, profile_run("1.36"))
    text = (done.directory / "results/gang_scheduling/gang.fitting-gang-runs.md").read_text()
    assert text.startswith("# gang.fitting-gang-runs: PASS")
    assert "### Pod ns/probe" in text
    assert "image: ghcr.io/kaic-dev/kaic-probe:0.1.0" in text
    assert '"count":' in text
    assert "- `Pod/ns/probe`" in text
    assert "run `20261124-000000-abcd`" in text


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
    got = fill(requirement("passed", [("dra.a", "passed")]), run)
    assert got.status == "Implemented"
    assert got.evidence == ["results/dra_support.md", "results/dra_support/junit.xml"]
    assert "dra.a" in got.notes
    assert run.run_id in got.notes
    skip = requirement("not-applicable", [("v.a", "skipped")], reason="v.a: no vGPU offered",
                       id="virtualized_accelerator", level="SHOULD")  # fmt: skip
    got = fill(skip, run)
    assert (got.status, got.notes, got.evidence) == (
        "N/A", "v.a: no vGPU offered", ["results/virtualized_accelerator.md"])  # fmt: skip
    partial = requirement("failed", [("dra.a", "passed"), ("dra.b", "failed")], reason="dra.b: x")
    got = fill(partial, run)
    assert got.status == "Partially Implemented"
    assert "passed: dra.a" in got.notes
    assert "failed: dra.b" in got.notes
    assert got.evidence == ["results/dra_support.md"]
    failed = requirement("failed", [("dra.a", "failed"), ("dra.b", "error")], reason="dra.a: y")
    assert (fill(failed, run).status, fill(failed, run).notes) == (
        "Not Implemented",
        "Failed: dra.a: y",
    )
    for undecided in ("error", "not-implemented", "not-run"):
        got = fill(requirement(undecided, [("dra.a", "error")]), run)
        assert (got.status, got.evidence, bool(got.notes)) == ("", [], True)
    assert fill(None, run).status == ""


def test_na_for_a_must_only_where_the_checklist_allows_it() -> None:
    run = profile_run("1.36")
    scaler = requirement("not-applicable", [("ca.a", "skipped")], id="cluster_autoscaling",
                         reason="ca.a: no autoscaler", condition="has one")  # fmt: skip
    assert product.fill_status(scaler, run).status == "N/A"
    hpa = requirement("not-applicable", [("pa.a", "skipped")], id="pod_autoscaling",
                      reason="pa.a: no custom metrics", condition="has HPA")  # fmt: skip
    got = product.fill_status(hpa, run)
    assert (got.status, got.evidence) == ("", [])
    assert "allows no N/A for this MUST" in got.notes


def test_missing_metadata_and_failed_musts_are_refused_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = profile_run("1.36", overrides={**NO_AUTOSCALER, "gang.fitting-gang-runs": "failed"})
    results = write_results(tmp_path, run)
    out = tmp_path / "sub"
    code = main(["submission", str(results), "--platform-name", "Acme", "--vendor", "Acme",
                 "--output", str(out)])  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert not out.exists()
    refused = [line for line in err if line.startswith("kaic submission: refused: ")]
    assert len(refused) == len(err) - 1
    assert (
        "kaic submission: refused: metadata: --platform-version is required by the CNCF validator"
        in err
    )
    for flag in ("--website-url", "--documentation-url", "--product-logo-url", "--description",
                 "--contact-email", "--k8s-conformance-url"):  # fmt: skip
        assert any(flag in line for line in refused), flag
    assert not any("--repo-url" in line for line in refused)  # optional for the validator
    must = "kaic submission: refused: MUST gang_scheduling: Partially Implemented"
    assert any(line.startswith(must) for line in refused)
    assert not any("cluster_autoscaling" in line for line in refused)
    assert "Traceback" not in "".join(err)


def test_draft_writes_what_would_be_refused_and_says_so(tmp_path: Path) -> None:
    run = profile_run("1.36", overrides={"gang.fitting-gang-runs": "failed"})
    done = submit(tmp_path, run, metadata={"platformName": "Acme"}, draft=True)
    text = (done.directory / "PRODUCT.yaml").read_text()
    assert "# DRAFT" in text
    assert "[" not in yaml.safe_load(text)["metadata"]["repoUrl"]
    assert "Metadata field vendorName is empty" in done.validator_findings
    assert any("'gang_scheduling' is MUST level but status is 'Partially Implemented'" in f
               for f in done.validator_findings)  # fmt: skip
    readme = (done.directory / "README.md").read_text()
    assert "**DRAFT: not ready to submit**" in readme
    assert "--vendor" in readme


def test_every_template_version_is_listed_and_1_38_has_none() -> None:
    assert checklist.available_versions() == list(TEMPLATE_VERSIONS)
    with pytest.raises(KaicError, match=r"no public checklist template for v1\.38 .*1\.37"):
        checklist.load_checklist("1.38")
    assert checklist.normalize_version("v1.35") == "1.35"
    with pytest.raises(KaicError, match="expected a Kubernetes minor version"):
        checklist.normalize_version("1.35.2")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_default_directory_is_the_validators_layout(tmp_path: Path) -> None:
    results = write_results(tmp_path, profile_run("1.35"))
    done = bundle.write_submission(results, None, METADATA, None, ["kaic"])
    assert done.directory == Path("submissions/v1.35/acme-ai-cloud")
    assert done.validator_findings == []


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
    results = write_results(tmp_path, profile_run("1.36", overrides=NO_AUTOSCALER))
    out = tmp_path / "v1.36" / "acme"
    assert main(["submission", str(results), *FLAGS, "--output", str(out)]) == 0
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {"PRODUCT.yaml", "README.md", "conformance-report.yaml", "results/junit.xml",
            "results/results.json", "results/summary.md", "results/report.html",
            "results/ai_inference.md", "results/ai_inference/junit.xml",
            "results/ai_inference/gateway-api.weighted-split.md"} <= names  # fmt: skip
    doc = yaml.safe_load((out / "PRODUCT.yaml").read_text())
    assert doc["metadata"]["vendorName"] == "Acme"
    assert doc["metadata"]["k8sConformanceUrl"].endswith("/v1.36/acme")
    report = yaml.safe_load((out / "conformance-report.yaml").read_text())
    assert report["kind"] == "ConformanceReport"
    assert report["profiles"][0]["name"] == "cncf-ai-v1.36"
    err = capsys.readouterr().err
    assert "note: cluster_autoscaling: N/A" in err
    assert "CNCF validator (offline rules): Requirement 'cluster_autoscaling'" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--version", "1.38"], "no public checklist template for v1.38"),
        (["--version", "one"], "expected a Kubernetes minor version"),
        (["--version", "1.33"], "a v1.33 submission needs a run of 'cncf-ai-v1.33'"),
        (["--k8s-conformance-url", "https://example.com/x"], "--k8s-conformance-url"),
    ],
)
def test_submission_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    results = write_results(tmp_path, profile_run("1.35"))
    code = main(["submission", str(results), *FLAGS, *extra])
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
