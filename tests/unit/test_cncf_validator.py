"""The CNCF validator's offline rules (submission/validate.py): each one refuses what
scripts/validate.go refuses, with its message, so a clean pass means something."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.submission import checklist, validate

SCHEMA = checklist.load_checklist("1.36")
GOOD_META = {
    "kubernetesVersion": "v1.36",
    "platformName": "Acme",
    "platformVersion": "2.4",
    "vendorName": "Acme",
    "websiteUrl": "https://acme.example",
    "repoUrl": "",
    "documentationUrl": "https://docs.acme.example",
    "productLogoUrl": "https://acme.example/logo.svg",
    "description": "AI platform",
    "contactEmailAddress": "ai@acme.example",
    "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.36/acme",
}


def good() -> dict[str, Any]:
    doc = copy.deepcopy(SCHEMA.data)
    doc["metadata"] = dict(GOOD_META)
    for items in doc["spec"].values():
        for item in items:
            item.update(status="Implemented", evidence=["evidence.md"], notes="")
    return doc


def item(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(i for items in doc["spec"].values() for i in items if i["id"] == rid)


def errors_of(tmp_path: Path, doc: dict[str, Any], where: str = "v1.36/acme") -> list[str]:
    folder = tmp_path / where
    folder.mkdir(parents=True)
    (folder / "evidence.md").write_text("x")
    path = folder / "PRODUCT.yaml"
    path.write_text(yaml.safe_dump(doc))
    return validate.validate(path, SCHEMA.path)


def test_a_complete_product_passes(tmp_path: Path) -> None:
    assert errors_of(tmp_path, good()) == []


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["metadata"].__setitem__(key, value)


def _item(rid: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: item(doc, rid).update(fields)


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("placeholder", _set("repoUrl", "[Repository URL]"),
     "Metadata field repoUrl has placeholder value: [Repository URL]"),
    ("empty required", _set("productLogoUrl", ""), "Metadata field productLogoUrl is empty"),
    ("missing", lambda d: d["metadata"].pop("k8sConformanceUrl"),
     "Missing metadata field: k8sConformanceUrl (or k8s_conformance_url)"),
    ("not a string", _set("platformVersion", 2.4),
     "Metadata field platformVersion is not a string"),
    ("bad url", _set("k8sConformanceUrl", "https://github.com/cncf/k8s-conformance/v1.36"),
     "Invalid k8sConformanceUrl format"),
    ("missing category", lambda d: d["spec"].pop("operator"), "Missing spec category: operator"),
    ("missing item", lambda d: d["spec"]["security"].clear(),
     "Missing requirement 'secure_accelerator_access' in category 'security'"),
    ("invalid status", _item("gpu_sharing", status="Done"),
     "Invalid status 'Done' for 'gpu_sharing'"),
    ("must not implemented", _item("gang_scheduling", status="Partially Implemented"),
     "Requirement 'gang_scheduling' is MUST level but status is 'Partially Implemented'"),
    ("must n/a", _item("cluster_autoscaling", status="N/A", notes="none"),
     "Requirement 'cluster_autoscaling' is MUST level but status is 'N/A'"),
    ("n/a without notes", _item("gpu_sharing", status="N/A", notes=""),
     "Notes required for 'gpu_sharing' when status is N/A"),
    ("evidence with a scheme", _item("ai_inference", evidence=["file://results/junit.xml#x"]),
     "Invalid evidence file for 'ai_inference': file://results/junit.xml#x (not found at"),
    ("missing evidence", _item("ai_inference", evidence=["results/nope.md"]),
     "Invalid evidence file for 'ai_inference': results/nope.md"),
    ("undecided should with evidence", _item("gpu_sharing", status="", evidence=["evidence.md"]),
     "Invalid status '' for 'gpu_sharing'"),
    ("undecided must", _item("ai_inference", status="", evidence=[]),
     "Invalid status '' for 'ai_inference'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "change", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_refuses(
    tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = good()
    change(doc)
    errors = errors_of(tmp_path, doc)
    assert any(message in e for e in errors), errors


def test_an_undecided_should_without_evidence_is_skipped(tmp_path: Path) -> None:
    doc = good()
    item(doc, "gpu_sharing").update(status="", evidence=[], notes="")
    assert errors_of(tmp_path, doc) == []


def test_snake_case_metadata_keys_count(tmp_path: Path) -> None:
    doc = good()
    doc["metadata"]["contact_email_address"] = doc["metadata"].pop("contactEmailAddress")
    assert errors_of(tmp_path, doc) == []


def test_the_path_must_name_the_version(tmp_path: Path) -> None:
    assert errors_of(tmp_path, good(), where="acme") == [
        f"Error: Could not determine version from path {tmp_path / 'acme' / 'PRODUCT.yaml'}"
    ]
