"""The public CNCF AI conformance checklist templates (cncf/k8s-ai-conformance `docs/`).

kaic ships them unchanged under `profiles/checklists/`; a PRODUCT.yaml is one of them filled in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conformance.errors import KaicError
from conformance.resources import data_path

STATUSES = ("Implemented", "Not Implemented", "Partially Implemented", "N/A")
ITEM_KEYS = ("id", "description", "level", "status", "evidence", "notes")
_VERSION = re.compile(r"^v?(1\.\d+)$")

# MUST items whose checklist wording is conditional on something a platform may rightly lack:
# "If the platform provides a cluster autoscaler or an equivalent mechanism, it must ...".
# pod_autoscaling is not here: its condition ("if the platform supports the
# HorizontalPodAutoscaler") holds on every Kubernetes platform, autoscaling/v2 being core API.
NA_ALLOWED = frozenset({"cluster_autoscaling"})
VALIDATOR_NA_CAVEAT = (
    "the checklist allows N/A here, but the CNCF validator at its current head refuses N/A for "
    "every MUST; see cncf/k8s-ai-conformance#46"
)


@dataclass(frozen=True)
class Checklist:
    version: str  # "1.35"
    path: Path
    data: dict[str, Any]

    @property
    def metadata_keys(self) -> list[str]:
        return list(self.data["metadata"])


def checklists_dir() -> Path:
    return data_path("profiles") / "checklists"


def available_versions() -> list[str]:
    found = (p.stem.removeprefix("AIConformance-") for p in checklists_dir().glob("*.yaml"))
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def normalize_version(text: str) -> str:
    match = _VERSION.match(text.strip())
    if not match:
        raise KaicError(f"--version {text!r}: expected a Kubernetes minor version such as 1.35")
    return match.group(1)


def load_checklist(version: str) -> Checklist:
    version = normalize_version(version)
    path = checklists_dir() / f"AIConformance-{version}.yaml"
    if not path.is_file():
        known = ", ".join(available_versions())
        raise KaicError(f"no public checklist template for v{version} (kaic ships {known})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Checklist(version, path, data)
