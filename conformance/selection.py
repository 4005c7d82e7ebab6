"""Which checks a run executes: the profile's checks, narrowed by --check and --skip."""

from __future__ import annotations

import fnmatch
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from conformance.errors import KaicError
from conformance.profiles import Profile

_RUN_ID = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def validate_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise KaicError(
            f"run id {run_id!r} must be a valid label value: lower-case letters, digits, '-' "
            "and '.', at most 63 characters"
        )
    return run_id


def _matches(check_id: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(check_id, p) for p in patterns)


def validate_patterns(patterns: Sequence[str], known: Iterable[str], flag: str) -> None:
    known = list(known)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(k, pattern) for k in known):
            raise KaicError(f"{flag} {pattern}: unknown check id (`kaic list --checks` shows them)")


def select_checks(
    profile: Profile,
    known: Iterable[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[str]:
    """The profile's check ids to run, in profile order. Unknown ids/globs are a usage error."""
    known = list(known)
    validate_patterns(include, known, "--check")
    validate_patterns(exclude, known, "--skip")
    chosen = [
        c
        for c in profile.check_ids()
        if (not include or _matches(c, include)) and not _matches(c, exclude)
    ]
    if include and not chosen:
        raise KaicError(
            f"--check {' '.join(include)}: none of these checks is part of profile {profile.name}"
        )
    return chosen
