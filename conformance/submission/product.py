"""PRODUCT.yaml: the checklist template filled in from a run's requirement statuses.

Status mapping (docs/certification.md):

- passed -> Implemented
- not-applicable -> N/A, with the checks' skip reason as `notes`
- failed with at least one of its checks passed -> Partially Implemented
- failed otherwise -> Not Implemented
- error, not-implemented, not-run -> left empty (""): kaic could not tell, so a person must
  decide; `notes` says why, and `kaic submission` lists them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from conformance.report.junit import testcase_name
from conformance.results import RequirementResult, Run
from conformance.submission.checklist import Checklist

JUNIT_EVIDENCE = "file://results/junit.xml#{}"

# kaic submission flag -> metadata key of the template
METADATA_FLAGS = {
    "platform_name": "platformName",
    "platform_version": "platformVersion",
    "vendor": "vendorName",
    "website_url": "websiteUrl",
    "repo_url": "repoUrl",
    "documentation_url": "documentationUrl",
    "product_logo_url": "productLogoUrl",
    "description": "description",
    "contact_email": "contactEmailAddress",
    "k8s_conformance_url": "k8sConformanceUrl",
}


@dataclass
class Product:
    document: dict[str, Any]
    unfilled_metadata: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)  # "id: why"


def fill_status(req: RequirementResult | None, run: Run) -> tuple[str, list[str], str]:
    """(status, evidence, notes) of one checklist item."""
    if req is None:
        return "", [], f"not in kaic profile {run.profile}; not verified by this run"
    evidence = [JUNIT_EVIDENCE.format(testcase_name(req.id, c.id)) for c in req.checks]
    passed = [c.id for c in req.checks if c.status == "passed"]
    if req.status == "passed":
        note = f"Verified by kaic {run.kaic_version} (run {run.run_id}): " + ", ".join(passed)
        return "Implemented", evidence, note
    if req.status == "not-applicable":
        return "N/A", evidence, req.reason
    if req.status == "failed":
        failed = [c.id for c in req.checks if c.status in ("failed", "error")]
        note = f"Failed: {req.reason}"
        if passed:
            note += f" (passed: {', '.join(passed)}; failed: {', '.join(failed)})"
            return "Partially Implemented", evidence, note
        return "Not Implemented", evidence, note
    why = {
        "error": f"kaic could not decide (a check errored): {req.reason}",
        "not-implemented": "kaic has no automated check for this requirement yet",
        "not-run": "its kaic checks were deselected in this run",
    }[req.status]
    return "", evidence, why


def items_of(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(category, item) for every requirement of a checklist document, in its order."""
    return [(cat, item) for cat, items in document["spec"].items() for item in items]


def build_product(run: Run, checklist: Checklist, metadata: dict[str, str]) -> Product:
    doc = copy.deepcopy(checklist.data)
    product = Product(doc)
    for key in checklist.metadata_keys:
        if key == "kubernetesVersion":
            continue
        if metadata.get(key):
            doc["metadata"][key] = metadata[key]
        else:
            product.unfilled_metadata.append(key)
    by_id = {r.id: r for r in run.requirements}
    for _category, item in items_of(doc):
        status, evidence, notes = fill_status(by_id.get(item["id"]), run)
        item["status"] = status
        item["evidence"] = evidence
        item["notes"] = notes
        if not status:
            product.undecided.append(f"{item['id']} ({item['level']}): {notes}")
    return product
