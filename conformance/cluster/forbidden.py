"""One line for an API server's 403: `forbidden: <verb> <resource>` and who was refused."""

from __future__ import annotations

import json
import re

_CANNOT = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]*)")?'
)


def forbidden_message(exc: BaseException) -> str | None:
    """The one-line description of a 403 from the client (ApiException, DynamicApiError)."""
    if getattr(exc, "status", None) != 403:
        return None
    body = getattr(exc, "body", None) or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = str(body)
    match = _CANNOT.search(message)
    if not match:
        return f"forbidden: {message or getattr(exc, 'reason', '')}".strip()
    resource = match["resource"]
    if match["group"]:
        resource += f".{match['group']}"
    where = f" in namespace {match['namespace']}" if match["namespace"] else ""
    return (
        f"forbidden: {match['verb']} {resource}{where} (as {match['user']}; "
        "kaic manifests --rbac-only prints the role kaic needs)"
    )
