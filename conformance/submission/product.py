"""PRODUCT.yaml: the checklist template filled in from a run's requirement statuses.

Status mapping (docs/certification.md):

- passed -> Implemented, citing only the checks that passed;
- not-applicable -> N/A with the checks' skip reasons as `notes`, for a SHOULD or a MUST whose
  checklist wording makes it conditional on something the platform may lack
  (`checklist.NA_ALLOWED`); any other MUST that kaic found not applicable is left undecided;
- failed with at least one of its checks passed -> Partially Implemented;
- failed otherwise -> Not Implemented;
- error, not-implemented, not-run -> left empty (""): kaic could not tell, so a person must
  decide; `notes` says why. Undecided items cite no evidence: the CNCF validator skips a
  SHOULD only when both its status and its evidence are empty.

Evidence entries are paths relative to PRODUCT.yaml's folder, as the CNCF validator joins them
(`evidence_files.py` writes them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from conformance.results import RequirementResult, Run
from conformance.submission.checklist import NA_ALLOWED, VALIDATOR_NA_CAVEAT, Checklist
from conformance.submission.evidence_files import cited_junit, requirement_file

# kaic submission flag -> metadata key of the template (and of the CNCF validator)
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
# The CNCF validator requires every metadata field but repoUrl (scripts/validate.go).
OPTIONAL_METADATA = frozenset({"repoUrl"})


@dataclass
class Product:
    document: dict[str, Any]
    missing_metadata: list[str] = field(default_factory=list)  # flags, e.g. "--vendor"
    undecided: list[str] = field(default_factory=list)  # "id (LEVEL): why"
    not_implemented_musts: list[str] = field(default_factory=list)  # "id: status (why)"
    caveats: list[str] = field(default_factory=list)  # N/A items the validator refuses


@dataclass(frozen=True)
class Item:
    status: str
    evidence: list[str]
    notes: str


def fill_status(req: RequirementResult | None, run: Run) -> Item:
    """status, evidence and notes of one checklist item."""
    if req is None:
        return Item("", [], f"not in kaic profile {run.profile}; not verified by this run")
    doc = requirement_file(req.id)
    passed = [c.id for c in req.checks if c.status == "passed"]
    if req.status == "passed":
        note = f"Verified by kaic {run.kaic_version} (run {run.run_id}): " + ", ".join(passed)
        left_out = [f"{c.id} ({c.status})" for c in req.checks if c.status != "passed"]
        if left_out:
            note += "; not cited: " + ", ".join(left_out)
        return Item("Implemented", [doc, cited_junit(req.id)], note)
    if req.status == "not-applicable":
        if req.level == "MUST" and req.id not in NA_ALLOWED:
            why = (
                "kaic found it not applicable, but the checklist allows no N/A for this MUST: "
                + req.reason
            )
            return Item("", [], why)
        note = req.reason
        if req.level == "MUST":
            note += f" ({VALIDATOR_NA_CAVEAT})"
        return Item("N/A", [doc], note)
    if req.status == "failed":
        failed = [c.id for c in req.checks if c.status in ("failed", "error")]
        note = f"Failed: {req.reason}"
        if passed:
            note += f" (passed: {', '.join(passed)}; failed: {', '.join(failed)})"
            return Item("Partially Implemented", [doc], note)
        return Item("Not Implemented", [doc], note)
    why = {
        "error": f"kaic could not decide (a check errored): {req.reason}",
        "not-implemented": "kaic has no automated check for this requirement yet",
        "not-run": "its kaic checks were deselected in this run",
    }[req.status]
    return Item("", [], why)


def items_of(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(category, item) for every requirement of a checklist document, in its order."""
    return [(cat, item) for cat, items in document["spec"].items() for item in items]


def _fill_metadata(doc: dict[str, Any], product: Product, metadata: dict[str, str]) -> None:
    """Every template key plus every key the validator requires; never a placeholder."""
    flag_of = {key: flag for flag, key in METADATA_FLAGS.items()}
    for key in dict.fromkeys([*doc["metadata"], *METADATA_FLAGS.values()]):
        if key == "kubernetesVersion":
            continue
        value = metadata.get(key, "")
        doc["metadata"][key] = value
        if not value and key not in OPTIONAL_METADATA:
            product.missing_metadata.append("--" + flag_of[key].replace("_", "-"))


def build_product(run: Run, checklist: Checklist, metadata: dict[str, str]) -> Product:
    doc = copy.deepcopy(checklist.data)
    product = Product(doc)
    _fill_metadata(doc, product, metadata)
    by_id = {r.id: r for r in run.requirements}
    for _category, item in items_of(doc):
        req = by_id.get(item["id"])
        filled = fill_status(req, run)
        item["status"], item["evidence"], item["notes"] = (
            filled.status,
            filled.evidence,
            filled.notes,
        )
        if not filled.status:
            product.undecided.append(f"{item['id']} ({item['level']}): {filled.notes}")
        if item["level"] == "MUST" and filled.status not in ("Implemented", "N/A"):
            product.not_implemented_musts.append(
                f"{item['id']}: {filled.status or 'undecided'} ({filled.notes})"
            )
        if item["level"] == "MUST" and filled.status == "N/A":
            product.caveats.append(f"{item['id']}: N/A ({VALIDATOR_NA_CAVEAT})")
    return product
