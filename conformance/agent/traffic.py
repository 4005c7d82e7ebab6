"""`traffic`: send OpenAI-style requests to a URL (a gateway) and count who answered.

Run inside the cluster, so that it reaches the gateway the way the platform's clients do. Each
request names a model (in the body and, with `--model-header`, in that header too, for gateways
that route on a header), carries `x-request-id: <run>-<n>`, and is tallied by HTTP status and by
the pod that served it (the model server's `x-inference-pod` header); a short run also lists the
request ids the answers carry. With several `--model`s the requests take turns. `--warmup` first
waits (up to that long) for one success, since a gateway may take a moment to program a route it
has accepted (`--warmup-until answer`: for any HTTP answer, where errors are expected). One JSON
document is printed at the end.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
ANSWER_IDS_UP_TO = 10  # a report lists the answers' request ids for runs of at most this many


@dataclass
class Plan:
    url: str
    count: int
    models: list[str]
    model_header: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    prompt_prefix: str = ""
    warmup_s: float = 0.0
    warmup_until: str = "success"  # or "answer": any HTTP status
    timeout_s: float = 10.0


@dataclass
class Reply:
    status: int
    pod: str
    model: str
    error: str = ""
    at_s: float = 0.0  # when it was sent, from the first request's start
    # The id the server answered with: a gateway may replace the client's (Envoy does, for
    # requests from outside its trust boundary).
    request_id: str = ""


def body_for(plan: Plan, i: int) -> Obj:
    model = plan.models[i % len(plan.models)]
    return {"model": model, "prompt": f"{plan.prompt_prefix}question {i}", "max_tokens": 8}


def send(plan: Plan, i: int, run: str) -> Reply:
    body = body_for(plan, i)
    headers = {"Content-Type": "application/json", "x-request-id": f"{run}-{i}", **plan.headers}
    if plan.model_header:
        headers[plan.model_header] = body["model"]
    request = urllib.request.Request(plan.url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=plan.timeout_s) as resp:
            return Reply(resp.status, resp.headers.get("x-inference-pod", ""), body["model"],
                         request_id=resp.headers.get("x-request-id", ""))  # fmt: skip
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers.get("x-inference-pod", "") if exc.headers else "",
                     body["model"], f"HTTP {exc.code}")  # fmt: skip
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Reply(0, "", body["model"], f"{type(reason).__name__}: {reason}"[:120])


def warm_up(plan: Plan, run: str) -> tuple[float, str]:
    """Seconds until the first success (or answer, see Plan.warmup_until; or the whole wait),
    and the last failure seen."""
    started = time.monotonic()
    last = ""
    while True:
        reply = send(plan, 0, f"{run}-warmup")
        if reply.status == 200 or (plan.warmup_until == "answer" and reply.status):
            return time.monotonic() - started, ""
        last = reply.error
        if time.monotonic() - started >= plan.warmup_s:
            return time.monotonic() - started, last
        time.sleep(0.5)


def tally(replies: list[Reply]) -> Obj:
    by_model: dict[str, Counter[str]] = defaultdict(Counter)
    for r in replies:
        if r.status == 200:
            by_model[r.model][r.pod or "?"] += 1
    pods: Counter[str] = Counter()
    for counts in by_model.values():
        pods.update(counts)
    return {
        "sent": len(replies),
        "ok": sum(1 for r in replies if r.status == 200),
        "status": dict(sorted(Counter(str(r.status) for r in replies).items())),
        "pods": dict(sorted(pods.items())),
        "pods_by_model": {m: dict(sorted(c.items())) for m, c in sorted(by_model.items())},
        "errors": dict(Counter(r.error for r in replies if r.error).most_common(5)),
        **failure_window(replies),
        **(
            {"request_ids": [r.request_id for r in replies]}
            if len(replies) <= ANSWER_IDS_UP_TO
            else {}
        ),
    }


def failure_window(replies: list[Reply]) -> Obj:
    """Which requests were not answered 200, and when: one outage, or errors spread out."""
    failed = [(i, r) for i, r in enumerate(replies) if r.status != 200]
    if not failed:
        return {}
    (first, a), (last, b) = failed[0], failed[-1]
    return {"failed_requests": {"count": len(failed), "first": first, "last": last,
                                "from_s": round(a.at_s, 2), "to_s": round(b.at_s, 2)}}  # fmt: skip


def run(plan: Plan) -> Obj:
    run_id = f"kaic-{uuid.uuid4().hex[:8]}"
    report: Obj = {"url": plan.url, "run": run_id}
    if plan.warmup_s > 0:
        waited, last = warm_up(plan, run_id)
        report["warmup_s"] = round(waited, 1)
        if last:
            report["warmup_error"] = last
    started = time.monotonic()
    replies = []
    for i in range(plan.count):
        at = time.monotonic() - started
        replies.append(send(plan, i, run_id))
        replies[-1].at_s = at
    report.update(tally(replies))
    report["seconds"] = round(time.monotonic() - started, 2)
    return report
