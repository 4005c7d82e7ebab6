"""One line for an API server's 403: `forbidden: <verb> <resource>` and who was refused."""

from __future__ import annotations

import re

from conformance.cluster.api_status import api_status

_CANNOT = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]*)")?'
)


def forbidden_message(exc: BaseException) -> str | None:
    """The one-line description of a 403 from the client (ApiException, DynamicApiError)."""
    status = api_status(exc)
    if status is None or status.code != 403:
        return None
    match = _CANNOT.search(status.message)
    if not match:
        return f"forbidden: {status.message or status.reason}".strip()
    resource = match["resource"]
    if match["group"]:
        resource += f".{match['group']}"
    where = f" in namespace {match['namespace']}" if match["namespace"] else ""
    return (
        f"forbidden: {match['verb']} {resource}{where} (as {match['user']}; "
        "kaic manifests --rbac-only prints the role kaic needs)"
    )
