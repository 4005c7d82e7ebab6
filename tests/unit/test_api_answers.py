"""An API server's refusals in words, and who is at fault: a failed admission webhook or another
5xx is the platform's answer (`failed`), a 4xx to kaic's request is kaic's (`error`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.dynamic.exceptions import DynamicApiError

from conformance.cluster.api_status import annotate, api_status, describe, explain, platform_fault
from tests.unit.test_plugin import checks_of, run

pytest_plugins = ["pytester"]

WEBHOOK_TIMEOUT = (
    'Internal error occurred: failed calling webhook "mworkload.kb.io": failed to call webhook: '
    'Post "https://127.0.0.1:20443/mutate--v1-pod?timeout=10s": context deadline exceeded'
)


def api_error(
    code: int, reason: str, message: str, causes: tuple[str, ...] = ()
) -> client.ApiException:
    exc = client.ApiException(status=code, reason=reason)
    exc.body = json.dumps({
        "kind": "Status", "status": "Failure", "message": message, "reason": reason,
        "details": {"causes": [{"message": c} for c in causes]}, "code": code,
    })  # fmt: skip
    exc.headers = {"Audit-Id": "1234", "Cache-Control": "no-cache"}
    return exc


def test_a_timed_out_webhook_is_named_with_its_cause_and_where_to_look() -> None:
    exc = api_error(500, "InternalError", WEBHOOK_TIMEOUT)
    annotate(exc, "create or update Job/ns/probe", "Service kueue-system/kueue-webhook:443")
    status = api_status(exc)
    assert status is not None
    assert status.webhook == "mworkload.kb.io"
    assert status.webhook_url == "https://127.0.0.1:20443/mutate--v1-pod"
    assert platform_fault(status)
    text = explain(exc)
    assert text is not None
    assert text.startswith(
        "the API server answered 500 InternalError to create or update Job/ns/probe: admission "
        'webhook "mworkload.kb.io" (served by Service kueue-system/kueue-webhook:443) did not '
        "answer within its timeout. Next: "
    )
    assert "'mworkload.kb.io'" in text
    assert "logs of the controller" in text
    assert "HTTPHeaderDict" not in text
    assert "Audit-Id" not in text


@pytest.mark.parametrize(
    ("why", "plain"),
    [
        ("dial tcp 127.0.0.1:20443: connect: connection refused", "refused the connection"),
        ('Post "https://127.0.0.1:1/x?timeout=10s": net/http: TLS handshake timeout',
         "did not answer within its timeout (not even the TLS handshake)"),
        ('service "lws-webhook" not found; no endpoints available', "no ready endpoints"),
        ("tls: failed to verify certificate: x509: certificate signed by unknown authority",
         "certificate the API server does not trust"),
        ("something new", "failed (something new)"),
    ],
)  # fmt: skip
def test_webhook_causes_in_plain_words(why: str, plain: str) -> None:
    status = api_status(api_error(500, "InternalError", f'failed calling webhook "v.x.io": {why}'))
    assert status is not None
    assert plain in describe(status)


def test_a_client_error_keeps_its_message_and_causes_and_is_not_the_platforms() -> None:
    exc = api_error(422, "Invalid", 'Job.batch "probe" is invalid', ("spec.parallelism: Invalid",))
    status = api_status(exc)
    assert status is not None
    assert not platform_fault(status)
    assert explain(exc) == (
        'the API server answered 422 Invalid: Job.batch "probe" is invalid '
        "(spec.parallelism: Invalid)"
    )


def test_dynamic_client_errors_and_non_api_errors() -> None:
    dynamic = DynamicApiError(api_error(503, "ServiceUnavailable", "the server is unavailable"))
    status = api_status(dynamic)
    assert status is not None
    assert status.code == 503
    assert platform_fault(status)
    assert api_status(RuntimeError("bug")) is None
    assert api_status(ConnectionRefusedError(111, "refused")) is None
    unparsable = client.ApiException(status=502, reason="Bad Gateway")
    unparsable.body = "<html>proxy error</html>"
    assert (
        explain(unparsable) == "the API server answered 502 Bad Gateway: <html>proxy error</html>"
    )


CHECKS = f"""
import json
from kubernetes import client
from conformance.checks import check
from conformance.cluster.api_status import annotate

def refusal(code, reason, message):
    exc = client.ApiException(status=code, reason=reason)
    exc.body = json.dumps({{"kind": "Status", "message": message, "reason": reason, "code": code}})
    return exc

@check("demo.webhook-hung", requirements=["baseline"])
def test_webhook_hung():
    exc = refusal(500, "InternalError", {WEBHOOK_TIMEOUT!r})
    annotate(exc, "create or update Job/ns/probe")
    raise exc

@check("demo.invalid-request", requirements=["other"])
def test_invalid_request():
    raise refusal(422, "Invalid", "spec.x: Required value")

@check("demo.aggregated-api-down", requirements=["baseline"])
def test_aggregated_api_down():
    raise refusal(503, "ServiceUnavailable", "the server is currently unable to handle the request")

@check("demo.unreachable", requirements=["other"])
def test_unreachable():
    import urllib3
    raise urllib3.exceptions.MaxRetryError(None, "https://10.0.0.1:6443/api", "refused")
"""

CATALOG = """
kind: RequirementCatalog
requirements:
  baseline: {category: c, source: kaic, description: d,
             checks: [demo.webhook-hung, demo.aggregated-api-down]}
  other: {category: c, source: kaic, description: d,
          checks: [demo.invalid-request, demo.unreachable]}
"""
PROFILE = """
kind: Profile
name: demo
requirements:
  - {id: baseline, level: MUST}
  - {id: other, level: MUST}
"""


def test_outcome_is_failed_for_the_platforms_answer_and_error_for_kaics(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_demo=CHECKS)
    profiles = pytester.mkdir("profiles")
    (profiles / "requirements.yaml").write_text(CATALOG)
    (profiles / "demo.yaml").write_text(PROFILE)
    _, data = run(pytester, Path(profiles / "demo.yaml"))
    checks = checks_of(data)
    assert checks["demo.webhook-hung"]["status"] == "failed"
    assert checks["demo.webhook-hung"]["message"].startswith(
        "the API server answered 500 InternalError to create or update Job/ns/probe: admission "
        'webhook "mworkload.kb.io" did not answer within its timeout. Next:'
    )
    assert checks["demo.invalid-request"]["status"] == "error"
    assert checks["demo.invalid-request"]["message"] == (
        "while running: the API server answered 422 Invalid: spec.x: Required value"
    )
    assert checks["demo.aggregated-api-down"]["status"] == "failed"
    assert checks["demo.aggregated-api-down"]["message"] == (
        "the API server answered 503 ServiceUnavailable: the server is currently unable to "
        "handle the request"
    )
    assert checks["demo.unreachable"]["status"] == "error"
    assert checks["demo.unreachable"]["message"].startswith("while running: MaxRetryError: ")
    statuses = {r["id"]: r["status"] for r in data["requirements"]}
    assert statuses == {"baseline": "failed", "other": "error"}
