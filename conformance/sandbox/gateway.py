"""The sandbox's Gateway API: the CRDs of the Gateway API (standard channel) and of the Gateway
API Inference Extension (InferencePool), from the pinned modules.

No Gateway API implementation runs in the sandbox yet, so no GatewayClass is Accepted and the
inference routing checks fail there, saying so (docs/sandbox.md says what a real one needs).
`--without gateway` leaves the CRDs out too: the Gateway API is then not served at all."""

from __future__ import annotations

from pathlib import Path

from conformance.cluster import Cluster
from conformance.sandbox import controllers

CRD_FOLDERS = ("gateway-api/config/crd/standard", "inference-extension/config/crd/bases")


def install_crds(cluster: Cluster, apply: controllers.Apply, data: Path) -> int:
    """Apply every document of the CRD folders (CRDs, and the Gateway API's admission policy
    against unsafe upgrades); wait for the CRDs to be Established; return how many."""
    objects = [doc for folder in CRD_FOLDERS for path in sorted((data / folder).glob("*.yaml"))
               for doc in controllers.docs(path)]  # fmt: skip
    for obj in objects:
        apply(cluster, obj)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    controllers.wait_crds(cluster, crds)
    return len(crds)
