"""How a check says the cluster misbehaved: what was expected, observed, and where to look."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn


class CheckFailure(AssertionError):
    """The cluster did not do what the check required (outcome `failed`, not `error`)."""


def failure_message(expected: str, observed: str, next_step: str = "") -> str:
    message = f"expected {expected}; observed {observed}"
    return f"{message}. Next: {next_step}" if next_step else message


def fail(
    *, expected: str, observed: str, next_step: str = "", objects: Iterable[str] = ()
) -> NoReturn:
    """Fail the running check. `objects` (e.g. "Pod/ns/name") are named in the message."""
    named = list(objects)
    if named:
        observed = f"{observed} (objects: {', '.join(named)})"
    raise CheckFailure(failure_message(expected, observed, next_step))
