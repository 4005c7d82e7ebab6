"""What the API server answered when it refused a request, in words a reader can act on.

The client's exceptions (`ApiException`, the dynamic client's `DynamicApiError`) print their
HTTP headers and raw body. Here they become an `ApiStatus` (the Status object's code, reason,
message and causes) and one paragraph: what kaic was doing, what the server said and, for an
admission webhook that failed, which webhook and where to look.

Who is at fault decides the outcome (see `platform_fault`): a 5xx is the platform's answer (an
admission webhook that timed out or refused, an aggregated API that failed, the API server or
its storage), so the check is `failed`; anything else (a 4xx: kaic's request, its credentials)
stays an `error` of the suite.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# As the API server words an admission webhook it could not call (apiserver's
# admission/plugin/webhook/errors): `failed calling webhook "<name>": <why>`.
_WEBHOOK = re.compile(r'failed calling webhook "(?P<name>[^"]+)":\s*(?P<why>.*)')
_CALLED = re.compile(r'(?:Post|Get) "(?P<url>[^"?]+)')
# The cause at the end of a Go client error chain, in plain words.
_CAUSES = (
    ("context deadline exceeded", "did not answer within its timeout"),
    ("Client.Timeout exceeded", "did not answer within its timeout"),
    ("TLS handshake timeout", "did not answer within its timeout (not even the TLS handshake)"),
    ("connection refused", "refused the connection (nothing listens at its address)"),
    ("no endpoints available", "has no ready endpoints behind its Service"),
    ("no such host", "has an address that does not resolve"),
    ("x509:", "presented a certificate the API server does not trust"),
    ("EOF", "closed the connection without answering"),
)


@dataclass(frozen=True)
class ApiStatus:
    code: int
    reason: str
    message: str
    causes: tuple[str, ...] = ()

    @property
    def webhook(self) -> str | None:
        """The admission webhook the API server failed to call, if that is what happened."""
        found = _WEBHOOK.search(self.message)
        return found["name"] if found else None

    @property
    def webhook_cause(self) -> str:
        found = _WEBHOOK.search(self.message)
        text = found["why"] if found else self.message
        plain = next((plain for needle, plain in _CAUSES if needle in text), "")
        return plain or f"failed ({text.strip()[:300]})"

    @property
    def webhook_url(self) -> str:
        """The address the API server called (its query, e.g. `?timeout=10s`, left out)."""
        found = _CALLED.search(self.message)
        return found["url"] if found else ""


def api_status(exc: BaseException) -> ApiStatus | None:
    """The Status in a client exception's body; None for anything that is not an API answer."""
    code = getattr(exc, "status", None)
    if not isinstance(code, int) or isinstance(exc, OSError):
        return None
    body: Any = getattr(exc, "body", None) or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(body) if isinstance(body, str) and body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    details = data.get("details") or {}
    causes = tuple(
        str(c.get("message") or c.get("reason") or "")
        for c in (details.get("causes") or [])
        if isinstance(c, dict)
    )
    message = str(data.get("message") or (body if not data else "") or "").strip()
    reason = str(data.get("reason") or getattr(exc, "reason", "") or "")
    return ApiStatus(code, reason, message.splitlines()[0] if message else "", causes)


def platform_fault(status: ApiStatus) -> bool:
    """Whether the answer is the platform failing (5xx), not kaic's request being wrong."""
    return status.code >= 500


def describe(status: ApiStatus, action: str = "", where: str = "") -> str:
    """One paragraph: what was being done, what the API server said, and what to look at.
    `where` says where a failed webhook is served (its Service or URL), when known."""
    doing = f" to {action}" if action else ""
    if status.webhook:
        served = f" (served by {where})" if where else ""
        return (
            f"the API server answered {status.code} {status.reason}{doing}: admission webhook "
            f'"{status.webhook}"{served} {status.webhook_cause}. Next: kubectl get '
            "validatingwebhookconfigurations,mutatingwebhookconfigurations -o yaml | grep -n "
            f"-B2 -A12 '{status.webhook}' (its Service and pods), and the logs of the "
            "controller that serves it"
        )
    extra = [c for c in status.causes if c and c not in status.message]
    said = status.message + (f" ({'; '.join(extra)})" if extra else "")
    text = f"the API server answered {status.code} {status.reason}{doing}"
    return f"{text}: {said}" if said else text


_ACTION = "kaic_action"  # attributes set on a client exception by `annotate`
_WHERE = "kaic_webhook_at"


def annotate(exc: BaseException, action: str, where: str = "") -> None:
    """Record on the exception what kaic was doing (and where a failed webhook is served), for
    `explain` to say when the check ends on it."""
    setattr(exc, _ACTION, action)
    if where:
        setattr(exc, _WHERE, where)


def explain(exc: BaseException) -> str | None:
    """`describe` for a client exception that carries an API answer, else None."""
    status = api_status(exc)
    if status is None:
        return None
    return describe(status, getattr(exc, _ACTION, ""), getattr(exc, _WHERE, ""))
