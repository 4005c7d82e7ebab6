"""How a check says the cluster misbehaved: what was expected, observed, and where to look."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

import pytest


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


class NotApplicable(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """The check does not apply, for a condition its requirement lists (`not_applicable_when`)."""

    def __init__(self, condition: str, detail: str) -> None:
        super().__init__(detail)
        self.condition = condition


def not_applicable(condition: str, detail: str) -> NoReturn:
    """Skip the running check for `condition`, an id its requirement's catalog entry lists
    under `not_applicable_when` (profiles/requirements.yaml); `detail` says what was found.
    A skip for any other reason is reported as kaic's error, never as not-applicable."""
    raise NotApplicable(condition, detail)
