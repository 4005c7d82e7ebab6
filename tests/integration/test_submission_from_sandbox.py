"""A submission written from a real run of a checklist profile on the sandbox: every evidence
path exists as the CNCF validator resolves it, the validator's offline rules find nothing but
what the run's own MUST outcomes explain, and the evidence shows what was deployed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.cli import main
from conformance.submission import checklist, validate

pytestmark = pytest.mark.sandbox

FLAGS = [
    "--platform-name", "Acme AI", "--vendor", "Acme", "--platform-version", "2.4",
    "--website-url", "https://acme.example", "--documentation-url", "https://docs.acme.example",
    "--product-logo-url", "https://acme.example/logo.svg", "--description", "AI platform",
    "--contact-email", "ai@acme.example",
    "--k8s-conformance-url", "https://github.com/cncf/k8s-conformance/tree/master/v1.35/acme",
]  # fmt: skip


def test_a_sandbox_run_becomes_a_submission_the_validator_accepts(
    sandbox: Any, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    main(["run", "--kubeconfig", str(sandbox.kubeconfig), "--output", str(out), "-n", "2"])
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    assert data["profile"] == "cncf-ai-v1.35"  # the default: the newest the sandbox meets
    folder = tmp_path / "v1.35" / "acme"
    # --draft: a flaky MUST must not hide what this test checks, the layout and the rules
    code = main(["submission", str(out / "results.json"), *FLAGS, "--output", str(folder),
                 "--draft"])  # fmt: skip
    assert code == 0
    findings = validate.validate(folder / "PRODUCT.yaml", checklist.load_checklist("1.35").path)
    musts = [r for r in data["requirements"] if r["level"] == "MUST"]
    template_ids = {i["id"] for items in checklist.load_checklist("1.35").data["spec"].values()
                    for i in items}  # fmt: skip
    not_passed = [r["id"] for r in musts if r["status"] != "passed" and r["id"] in template_ids]
    # the sandbox's Karpenter grows and shrinks its GPU NodePool: no MUST is N/A any more
    assert "cluster_autoscaling" not in not_passed
    assert len(findings) == len(not_passed), findings
    for rid, finding in zip(sorted(not_passed), sorted(findings), strict=True):
        assert f"Requirement '{rid}' is MUST level" in finding
    product = yaml.safe_load((folder / "PRODUCT.yaml").read_text())
    for items in product["spec"].values():
        for item in items:
            for ref in item["evidence"]:
                assert (folder / ref).is_file(), ref
    split = (folder / "results/ai_inference/gateway-api.weighted-split.md").read_text()
    assert "### HTTPRoute " in split  # the manifests, recorded whatever the outcome
    assert "backendRefs" in split
    observed = {c["id"]: c["evidence"]["observed"] for r in data["requirements"]
                for c in r["checks"]}  # fmt: skip
    if "split" in observed["gateway-api.weighted-split"]:
        svg = folder / "results/ai_inference/gateway-api.weighted-split-weighted-split.svg"
        assert svg.read_text().startswith("<svg")
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3  # split, HPA replicas, utilization at least
