"""AI service metrics: the platform's monitoring system discovers a model server by the
platform's own mechanism, and after the suite sends it requests, Prometheus answers with the
server's request count, latency histogram and queue depth."""

from __future__ import annotations

import time

from conformance.checks import _monitoring as mon
from conformance.checks.registry import check
from conformance.cluster import Cluster, WaitTimeout
from conformance.cluster.wait import poll_or_fail, poll_until
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.settings import Settings

Obj = mon.Obj
REQUESTS = 12
QUEUE_DEPTH = 5
DISCOVERY_TIMEOUT_S = 150
FOLLOW_UP = "kubectl -n {ns} get pod {name} -o yaml; the Prometheus targets page (/targets)"


def _wait_for_target(kube: Kube, prometheus: mon.Prometheus, name: str, pod_ip: str) -> Obj:
    def probe() -> tuple[Obj | None, str]:
        try:
            targets = prometheus.active_targets(kube.cluster)
        except mon.PrometheusError as exc:
            return None, str(exc)
        mine = [t for t in targets if mon.target_of(t, kube.namespace, name, pod_ip)]
        up = next((t for t in mine if t.get("health") == "up"), None)
        seen = (f"{len(targets)} active target(s), of the pod: "
                + (", ".join(f"{t.get('scrapeUrl')} {t.get('health')} {t.get('lastError', '')}"
                             for t in mine) or "none"))  # fmt: skip
        return up, seen

    return poll_or_fail(
        probe,
        awaiting=f"{prometheus.where} to scrape Pod/{kube.namespace}/{name}",
        timeout_s=DISCOVERY_TIMEOUT_S * kube.cluster.timeout_scale,
        expected=f"the monitoring system ({prometheus.where}) to discover and scrape the "
        f"model server Pod/{kube.namespace}/{name}",
        next_step="check that Prometheus discovers pods (kubernetes_sd_configs role pod "
        "honouring prometheus.io/scrape, or PodMonitors of the Prometheus operator) and may "
        "reach pod IPs; " + FOLLOW_UP.format(ns=kube.namespace, name=name),
    )


def _prometheus(cluster: Cluster, settings: Settings, evidence: Evidence) -> mon.Prometheus:
    prometheus = mon.find_prometheus(cluster, settings)
    evidence.observe("prometheus", prometheus.where)
    return prometheus


@check("ai-service-metrics.discovered", requirements=["ai_service_metrics"])
def test_discovered(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """The monitoring system finds a newly deployed model server and scrapes it."""
    prometheus = _prometheus(kube.cluster, kaic_settings, evidence)
    name = "model-server"
    started = time.monotonic()
    how, pod = mon.deploy_model_server(kube, name)
    evidence.observe("asked_by", how.describe())
    target = _wait_for_target(kube, prometheus, name, (pod.get("status") or {}).get("podIP", ""))
    evidence.observe("target", {k: target.get(k) for k in ("scrapeUrl", "health", "lastScrape",
                                                            "scrapePool")})  # fmt: skip
    evidence.observe("discovered_after_s", round(time.monotonic() - started, 1))


def _send(kube: Kube, name: str, count: int) -> list[str]:
    """`count` completions through the API server's proxy; the pods that answered."""
    answered = []
    for i in range(count):
        path = "/v1/chat/completions" if i % 2 else "/v1/completions"
        body = ({"model": "kaic-probe", "messages": [{"role": "user", "content": f"q{i}"}]}
                if i % 2 else {"model": "kaic-probe", "prompt": f"q{i}"})  # fmt: skip
        reply = kube.cluster.proxy("POST", mon.server(kube, name), path, body=body)
        if reply.status != 200:
            fail(
                expected=f"the model server Pod/{kube.namespace}/{name} to answer {path}",
                observed=f"HTTP {reply.status}: {reply.text[:200]!r}",
                next_step=f"kubectl -n {kube.namespace} logs {name}",
            )
        answered.append(reply.headers.get("x-inference-pod", ""))
    return answered


@check("ai-service-metrics.queried", requirements=["ai_service_metrics"])
def test_queried(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """After requests, Prometheus returns the server's request count, latency histogram and queue
    depth for that pod."""
    prometheus = _prometheus(kube.cluster, kaic_settings, evidence)
    name = "model-server"
    _how, pod = mon.deploy_model_server(kube, name, queue_depth=QUEUE_DEPTH)
    _wait_for_target(kube, prometheus, name, (pod.get("status") or {}).get("podIP", ""))
    answered = _send(kube, name, REQUESTS)
    evidence.observe("requests_sent", REQUESTS)
    evidence.observe("answered_by", sorted(set(answered)))
    # what -> (metric, value wanted, whether at least that is enough)
    wanted = {
        "request count": ("vllm:request_success_total", REQUESTS, True),
        "latency histogram": ("vllm:e2e_request_latency_seconds_count", REQUESTS, True),
        "queue depth": ("vllm:num_requests_waiting", QUEUE_DEPTH, False),
    }
    observed: dict[str, float | None] = {}

    def good(what: str) -> bool:
        value, (_metric, target, at_least) = observed.get(what), wanted[what]
        return value is not None and (value >= target if at_least else value == target)

    def probe() -> tuple[bool, str]:
        for what, (metric, _target, _at_least) in wanted.items():
            try:
                found = prometheus.query(kube.cluster, metric)
            except mon.PrometheusError as exc:
                return False, str(exc)
            series = mon.pod_series(found, kube.namespace, name)
            observed[what] = sum(mon.sample_value(s) for s in series) if series else None
        return all(good(w) for w in wanted), str(observed)

    try:
        poll_until(probe, awaiting="the pod's metrics in Prometheus",
                   timeout_s=60 * kube.cluster.timeout_scale, interval_s=2)  # fmt: skip
    except WaitTimeout:
        fail(
            expected=f"{prometheus.where} to return, for Pod/{kube.namespace}/{name}, "
            f"{REQUESTS}+ requests, a latency histogram with {REQUESTS}+ observations and a "
            f"queue depth of {QUEUE_DEPTH}",
            observed="; ".join(f"{w} ({wanted[w][0]}): {observed.get(w)}"
                               for w in wanted if not good(w)),
            next_step="check the scrape configuration keeps the model server's metrics and "
            "labels them with pod and namespace",
        )  # fmt: skip
    buckets = mon.pod_series(
        prometheus.query(kube.cluster, "vllm:e2e_request_latency_seconds_bucket"),
        kube.namespace, name,
    )  # fmt: skip
    if not buckets:
        fail(
            expected="the latency histogram's buckets (vllm:e2e_request_latency_seconds_bucket)",
            observed="only its count",
            next_step="check metric relabelling does not drop _bucket series",
        )
    bucket = f'vllm:e2e_request_latency_seconds_bucket{{pod="{name}"}}'
    p90 = prometheus.query(kube.cluster, f"histogram_quantile(0.9, sum by (le) ({bucket}))")
    evidence.observe("metrics", observed | {"latency_buckets": len(buckets)})
    if p90:
        evidence.observe("latency_p90_s", mon.sample_value(p90[0]))
