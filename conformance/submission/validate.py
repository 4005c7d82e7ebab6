"""The offline rules of the CNCF repository's own validator (cncf/k8s-ai-conformance
`scripts/validate.go`, run on every submission pull request), applied to a written PRODUCT.yaml.

Left out, because they need the network: that every http(s) URL answers, and that
`vendorName` matches a CNCF member in the landscape. Messages are the validator's own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from conformance.submission.checklist import STATUSES

# metadata key -> required (validate.go's metadataFields)
METADATA_FIELDS = {
    "kubernetesVersion": True,
    "platformName": True,
    "platformVersion": True,
    "vendorName": True,
    "websiteUrl": True,
    "repoUrl": False,
    "documentationUrl": True,
    "productLogoUrl": True,
    "description": True,
    "contactEmailAddress": True,
    "k8sConformanceUrl": True,
}
K8S_CONFORMANCE_URL = re.compile(
    r"^https://github\.com/cncf/k8s-conformance/tree/(master|main)/v\d+\.\d+/[^/]+/?$"
)
_VERSION_IN_PATH = re.compile(r"(?:^|/)(v\d+\.\d+)/")


def _snake(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def metadata_errors(metadata: dict[str, Any] | None) -> list[str]:
    if metadata is None:
        return ["Missing 'metadata' section"]
    errors = []
    for key, required in METADATA_FIELDS.items():
        value = metadata.get(key, metadata.get(_snake(key)))
        if value is None:
            if required:
                errors.append(f"Missing metadata field: {key} (or {_snake(key)})")
            continue
        if not isinstance(value, str):
            errors.append(f"Metadata field {key} is not a string")
        elif not value:
            if required:
                errors.append(f"Metadata field {key} is empty")
        elif value.startswith("[") and value.endswith("]"):
            errors.append(f"Metadata field {key} has placeholder value: {value}")
        elif key == "k8sConformanceUrl" and not K8S_CONFORMANCE_URL.match(value):
            errors.append(
                f"Invalid k8sConformanceUrl format: {value}. Expected format: "
                "https://github.com/cncf/k8s-conformance/tree/master/v{version}/{product}"
            )
    return errors


def _item_errors(want: dict[str, Any], got: dict[str, Any], folder: Path) -> list[str]:
    rid, status, evidence = want["id"], got.get("status") or "", got.get("evidence") or []
    if want["level"] == "SHOULD" and not status and not evidence:
        return []
    errors = []
    if status not in STATUSES:
        errors.append(f"Invalid status '{status}' for '{rid}'. Must be one of {list(STATUSES)}")
    if want["level"] == "MUST" and status != "Implemented":
        errors.append(
            f"Requirement '{rid}' is MUST level but status is '{status}'. It must be 'Implemented'."
        )
    if status == "N/A" and not got.get("notes"):
        errors.append(f"Notes required for '{rid}' when status is N/A")
    for link in evidence:
        if not link or link.startswith(("http://", "https://")):
            continue
        if not (folder / link).exists():
            errors.append(
                f"Invalid evidence file for '{rid}': {link} (not found at {folder / link})"
            )
    return errors


def spec_errors(spec: dict[str, Any] | None, schema: dict[str, Any], folder: Path) -> list[str]:
    if spec is None:
        return ["Missing 'spec' section"]
    errors = []
    for category, wanted in schema["spec"].items():
        if category not in spec:
            errors.append(f"Missing spec category: {category}")
            continue
        items = {i.get("id"): i for i in spec[category] or []}
        for want in wanted:
            if want["id"] not in items:
                errors.append(f"Missing requirement '{want['id']}' in category '{category}'")
            else:
                errors += _item_errors(want, items[want["id"]], folder)
    return errors


def validate(product_path: Path, schema_path: Path) -> list[str]:
    """Every offline error the CNCF validator would print for this PRODUCT.yaml."""
    if not _VERSION_IN_PATH.search(product_path.as_posix()):
        return [f"Error: Could not determine version from path {product_path}"]
    schema = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
    product = yaml.safe_load(product_path.read_text(encoding="utf-8")) or {}
    return metadata_errors(product.get("metadata")) + spec_errors(
        product.get("spec"), schema, product_path.parent
    )
