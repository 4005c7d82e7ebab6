"""Roll-up: check outcomes -> requirement status -> verdict -> exit code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.profiles import Profile, Requirement
from conformance.results import (
    CHECK_STATUSES,
    EXIT_CODES,
    CheckResult,
    RequirementResult,
    roll_up,
    verdict,
)


def req(
    rid: str, level: str = "MUST", checks: tuple[str, ...] = ("a.b",), condition: str | None = None
) -> Requirement:
    return Requirement(rid, "cat", level, "cncf", "desc", checks, condition)  # type: ignore[arg-type]


def profile(*reqs: Requirement) -> Profile:
    return Profile("p", "P", "", tuple(reqs))


def outcome(check_id: str, status: str, message: str = "") -> CheckResult:
    return CheckResult(check_id, status, message=message)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["passed", "passed"], "passed"),
        (["passed", "skipped"], "passed"),
        (["skipped", "skipped"], "not-applicable"),
        (["passed", "error"], "error"),
        (["error", "failed"], "failed"),
        (["skipped", "failed"], "failed"),
    ],
)
def test_requirement_status_from_its_checks(statuses: list[str], expected: str) -> None:
    ids = tuple(f"x.c{i}" for i in range(len(statuses)))
    results = {i: outcome(i, s, f"{s} because") for i, s in zip(ids, statuses, strict=True)}
    [rolled] = roll_up(profile(req("r", checks=ids)), results)
    assert rolled.status == expected
    if expected in ("failed", "error", "not-applicable"):
        assert "because" in rolled.reason


def test_requirement_without_checks_is_not_implemented_never_passed() -> None:
    [rolled] = roll_up(profile(req("r", checks=())), {})
    assert rolled.status == "not-implemented"
    assert verdict([rolled]) == "not-conformant"


def test_deselected_checks_make_the_requirement_not_run() -> None:
    [rolled] = roll_up(profile(req("r", checks=("a.b",))), {})
    assert rolled.status == "not-run"
    assert verdict([rolled]) == "partial"


def rr(level: str, status: str, condition: str | None = None) -> RequirementResult:
    return RequirementResult("r", level, status, [], condition=condition)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("requirements", "expected"),
    [
        ([rr("MUST", "passed"), rr("SHOULD", "passed")], "conformant"),
        ([rr("MUST", "passed"), rr("SHOULD", "failed")], "partial"),
        ([rr("MUST", "passed"), rr("SHOULD", "not-applicable")], "partial"),
        ([rr("MUST", "passed"), rr("SHOULD", "not-implemented")], "partial"),
        ([rr("MUST", "failed"), rr("SHOULD", "passed")], "not-conformant"),
        ([rr("MUST", "error")], "not-conformant"),
        ([rr("MUST", "not-applicable", condition="an autoscaler exists")], "conformant"),
        ([rr("MUST", "not-applicable")], "partial"),
    ],
)
def test_verdict(requirements: list[RequirementResult], expected: str) -> None:
    assert verdict(requirements) == expected


def test_exit_codes() -> None:
    assert EXIT_CODES == {"conformant": 0, "not-conformant": 1, "partial": 3}


requirement_results = st.builds(
    rr,
    level=st.sampled_from(["MUST", "SHOULD"]),
    status=st.sampled_from(
        ["passed", "failed", "error", "not-applicable", "not-implemented", "not-run"]
    ),
    condition=st.none() | st.just("if present"),
)
SEVERITY = {"conformant": 0, "partial": 1, "not-conformant": 2}


@given(st.lists(requirement_results, max_size=6), requirement_results)
def test_adding_a_requirement_never_improves_the_verdict(
    base: list[RequirementResult], extra: RequirementResult
) -> None:
    assert SEVERITY[verdict([*base, extra])] >= SEVERITY[verdict(base)]


@given(st.lists(st.sampled_from(CHECK_STATUSES), min_size=1, max_size=5))
def test_a_failed_check_always_fails_its_requirement(statuses: list[str]) -> None:
    ids = tuple(f"x.c{i}" for i in range(len(statuses) + 1))
    results = {i: outcome(i, s) for i, s in zip(ids, [*statuses, "failed"], strict=True)}
    [rolled] = roll_up(profile(req("r", checks=ids)), results)
    assert rolled.status == "failed"
    assert verdict([rolled]) == "not-conformant"
