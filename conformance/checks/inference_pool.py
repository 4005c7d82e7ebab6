"""Advanced inference ingress: the platform's gateway routes to an InferencePool through the
real endpoint picker, which picks among the pool's Ready pods by what they report (queue depth,
KV-cache load) and by prompt prefix. Traffic assertions are statistical; the counts are in the
evidence."""

from __future__ import annotations

from conformance.checks import _gateway as gw
from conformance.checks import _pools as pl
from conformance.checks._gateway import GATEWAY_PODS
from conformance.checks.registry import check
from conformance.cluster import ObjectRef
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.settings import Settings

REQUESTS = 60
SETTLE_REQUESTS = 20
LOADED_QUEUE = 50
LOADED_KV_CACHE = 0.95
# Prompts sharing this much text are one conversation to a prefix-aware picker.
SHARED_PREFIX = "You are a careful assistant for the kaic conformance suite. " * 30
AFFINITY_SHARE = 0.8


@check(
    "inference-pool.accepted",
    requirements=["advanced_inference_ingress"],
    pod_security=GATEWAY_PODS,
)
def test_accepted(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """An HTTPRoute to an InferencePool, and the pool itself, are Accepted with their
    references resolved by the Gateway; requests through it reach only the pool's pods."""
    pool = pl.deploy_pool(kube, kaic_settings)
    pl.wait_accepted(kube, pool.name, pool.gateway)
    report = gw.traffic(kube, pool.gateway, "pool-client", count=REQUESTS)
    gw.require_all_ok(report, pool.gateway, f"the pods of InferencePool {pool.name}")
    strangers = set(report["pods"]) - set(pool.pods)
    if strangers:
        fail(expected=f"only the pool's pods {pool.pods} to serve its requests",
             observed=f"served by {report['pods']}")  # fmt: skip


@check(
    "inference-pool.endpoints-follow-pods",
    requirements=["advanced_inference_ingress"],
    pod_security=GATEWAY_PODS,
)
def test_endpoints_follow_pods(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pod that leaves the pool (deleted) stops receiving its traffic; the others keep
    serving all of it."""
    pool = pl.deploy_pool(kube, kaic_settings)
    pl.wait_accepted(kube, pool.name, pool.gateway)
    before = gw.traffic(kube, pool.gateway, "before-client", count=REQUESTS)
    gw.require_all_ok(before, pool.gateway, f"the pods of InferencePool {pool.name}")
    # the pod leaving is one that served: a gateway that never used it would pass otherwise
    leaving = max(pool.pods, key=lambda pod: before["pods"].get(pod, 0))
    kube.cluster.delete(ObjectRef("v1", "Pod", leaving, kube.namespace), background=False)
    kube.cluster.wait_for("v1", "Pod", lambda objs: not objs or None,
                          awaiting=f"Pod/{kube.namespace}/{leaving} to be gone", timeout_s=120,
                          namespace=kube.namespace, name=leaving)  # fmt: skip
    # As endpoints do in any cluster, the change takes a moment to reach the picker: one round
    # of requests (kept as evidence, not judged) before the round that must be clean.
    settling = gw.traffic(kube, pool.gateway, "settle-client", count=SETTLE_REQUESTS)
    after = gw.traffic(kube, pool.gateway, "after-client", count=REQUESTS)
    evidence.observe("left", {"pod": leaving, "served_before": before["pods"].get(leaving, 0)})
    evidence.observe("while_settling", settling["status"])
    gw.require_all_ok(after, pool.gateway, f"the remaining pods of {pool.name}")
    if after["pods"].get(leaving):
        fail(expected=f"no request to reach {leaving} once deleted",
             observed=f"it served {after['pods'][leaving]} of {REQUESTS} "
             f"(before: {before['pods']}; after: {after['pods']})")  # fmt: skip


@check(
    "inference-pool.load-aware",
    requirements=["advanced_inference_ingress"],
    pod_security=GATEWAY_PODS,
)
def test_load_aware(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """When one pod reports a deep queue and a nearly full KV cache, its share of new requests
    drops to well under an even share."""
    pool = pl.deploy_pool(kube, kaic_settings)
    pl.wait_accepted(kube, pool.name, pool.gateway)
    baseline = gw.traffic(kube, pool.gateway, "baseline-client", count=REQUESTS)
    gw.require_all_ok(baseline, pool.gateway, f"the pods of InferencePool {pool.name}")
    busy = max(pool.pods, key=lambda pod: baseline["pods"].get(pod, 0))  # it served before
    before = baseline["pods"].get(busy, 0)
    pool.control(kube, busy, queue_depth=LOADED_QUEUE, kv_cache_usage=LOADED_KV_CACHE)
    report = gw.traffic(kube, pool.gateway, "load-client", count=REQUESTS)
    gw.require_all_ok(report, pool.gateway, f"the pods of InferencePool {pool.name}")
    got = report["pods"].get(busy, 0)
    fair = REQUESTS / len(pool.pods)
    evidence.observe("busy_pod", {"pod": busy, "queue_depth": LOADED_QUEUE,
                                  "kv_cache_usage": LOADED_KV_CACHE, "served": got,
                                  "served_before_loading": before,
                                  "even_share": round(fair, 1)})  # fmt: skip
    if got > fair / 2 or got > before / 2:
        fail(
            expected=f"{busy} (queue {LOADED_QUEUE}, KV cache {LOADED_KV_CACHE:.0%}) to get "
            f"under half an even share ({fair / 2:.0f} of {REQUESTS}) and under half of what it "
            f"served before it was loaded ({before})",
            observed=f"it served {got}; all: {report['pods']} (before loading: {baseline['pods']})",
            next_step=f"the endpoint picker's logs (kubectl -n {kube.namespace} logs "
            f"deploy/{pool.picker}); does it scrape vllm:num_requests_waiting?",
        )


@check(
    "inference-pool.prefix-affinity",
    requirements=["advanced_inference_ingress"],
    pod_security=GATEWAY_PODS,
)
def test_prefix_affinity(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """Requests sharing a long prompt prefix, from two client pods, land on one pod far above
    chance; a control set without a shared prefix does not (a gateway that pins all traffic
    to one pod fails)."""
    pool = pl.deploy_pool(kube, kaic_settings)
    pl.wait_accepted(kube, pool.name, pool.gateway)
    served: dict[str, int] = {}
    for client in ("prefix-client", "prefix-client-2"):
        report = gw.traffic(kube, pool.gateway, client, count=REQUESTS // 2,
                            prompt_prefix=SHARED_PREFIX)  # fmt: skip
        gw.require_all_ok(report, pool.gateway, f"the pods of InferencePool {pool.name}")
        for pod, n in report["pods"].items():
            served[pod] = served.get(pod, 0) + n
    control = gw.traffic(kube, pool.gateway, "control-client", count=REQUESTS // 2)
    gw.require_all_ok(control, pool.gateway, f"the pods of InferencePool {pool.name}")
    top_pod, top = max(served.items(), key=lambda kv: kv[1], default=("", 0))
    control_top = max(control["pods"].values(), default=0)
    evidence.observe("affinity", {"prefix_chars": len(SHARED_PREFIX), "top_pod": top_pod,
                                  "top_share": round(top / REQUESTS, 2), "served": served,
                                  "control_top_share": round(control_top / (REQUESTS // 2), 2),
                                  "chance": round(1 / len(pool.pods), 2)})  # fmt: skip
    if top < AFFINITY_SHARE * REQUESTS:
        fail(
            expected=f"at least {AFFINITY_SHARE:.0%} of {REQUESTS} requests sharing a "
            f"{len(SHARED_PREFIX)}-character prefix, from two client pods, on one pod (chance: "
            f"{1 / len(pool.pods):.0%})",
            observed=f"served by {served}",
            next_step="check that the endpoint picker runs its prefix-cache scorer",
        )
    if control_top >= AFFINITY_SHARE * (REQUESTS // 2):
        fail(
            expected=f"{REQUESTS // 2} requests without a shared prefix spread over the pool's "
            f"pods (under {AFFINITY_SHARE:.0%} on any one)",
            observed=f"served by {control['pods']}: the gateway sends everything to one pod, "
            "prefix or not",
            next_step="check the endpoint picker's scorers and the gateway's session affinity",
        )


@check(
    "inference-pool.invalid-picker",
    requirements=["advanced_inference_ingress"],
    pod_security=GATEWAY_PODS,
)
def test_invalid_picker(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pool whose endpoint picker reference names no Service gets ResolvedRefs=False, and
    requests to it fail with a server error rather than reaching a pod."""
    pool = pl.deploy_pool(kube, kaic_settings, name="orphan", picker="kaic-no-such-picker")
    found = gw.wait_parent_conditions(kube, pl.POOL_API, "InferencePool", pool.name,
                                      pool.gateway, {"ResolvedRefs": "False"})  # fmt: skip
    evidence.observe("pool_status", gw.parent_status(found, pool.gateway))
    report = gw.traffic(kube, pool.gateway, "orphan-client", count=10, warmup_until="answer")
    served = sum(report["pods"].values())
    errors = sum(n for code, n in report["status"].items() if code.startswith("5"))
    if served or errors != report["sent"]:
        unanswered = report["status"].get("0", 0)
        fail(
            expected=f"every request through {pool.gateway.ref} to InferencePool {pool.name} "
            "(no picker) to get a 5xx from the gateway",
            observed=f"status counts {report['status']}, served by {report['pods']}"
            + (f"; {unanswered} not answered at all ({report['errors']}): the pool's bad "
               "reference took the Gateway's listener down" if unanswered else ""),
            next_step=f"kubectl -n {kube.namespace} get inferencepool {pool.name} -o yaml; "
            "check the gateway controller's logs",
        )  # fmt: skip


@check(
    "inference-pool.fail-open",
    requirements=["advanced_inference_ingress"],
    pod_security=GATEWAY_PODS,
)
def test_fail_open(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A FailOpen pool keeps serving from its pods when its endpoint picker goes away."""
    pool = pl.deploy_pool(kube, kaic_settings, failure_mode="FailOpen")
    pl.wait_accepted(kube, pool.name, pool.gateway)
    before = gw.traffic(kube, pool.gateway, "before-client", count=20)
    gw.require_all_ok(before, pool.gateway, f"the pods of InferencePool {pool.name}")
    kube.cluster.delete(ObjectRef("apps/v1", "Deployment", pool.picker, kube.namespace),
                        background=False)  # fmt: skip
    kube.cluster.wait_for("v1", "Pod", lambda objs: not objs or None,
                          awaiting=f"the endpoint picker's pods ({pool.picker}) to be gone",
                          timeout_s=180, namespace=kube.namespace,
                          label_selector=f"app.kubernetes.io/name={pool.picker}")  # fmt: skip
    after = gw.traffic(kube, pool.gateway, "after-client", count=REQUESTS)
    evidence.observe("picker_down", {"before": before["pods"], "after": after["status"]})
    gw.require_all_ok(after, pool.gateway, f"the pods of FailOpen pool {pool.name} with its "
                      "picker down")  # fmt: skip
