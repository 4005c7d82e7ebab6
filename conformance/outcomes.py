"""From pytest's per-phase reports to one kaic check outcome (xdist-safe: plain JSON data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.cluster.api_status import api_status, explain, platform_fault
from conformance.cluster.forbidden import forbidden_message
from conformance.failures import NotApplicable
from conformance.results import CheckResult, CheckStatus

MAX_MESSAGE = 2000


def classify(call: pytest.CallInfo[None], report: pytest.TestReport) -> tuple[CheckStatus, str]:
    """Status and message of one phase, by who is at fault:

    - `failed`: the cluster answered and the answer is wrong or missing: a check's assertion
      (`fail`, a wait that timed out), or a 5xx from the API server while the check ran or was
      prepared (an admission webhook that timed out or refused, an aggregated API that failed,
      the API server or its storage);
    - `error`: kaic itself could not ask or could not tell: its own bug (any other exception),
      its request refused as invalid (4xx), its credentials (401/403), the API server
      unreachable, or anything that went wrong while cleaning up.
    """
    if report.passed:
        return "passed", ""
    if report.skipped:
        return "skipped", _skip_reason(report)
    excinfo = call.excinfo
    if excinfo is None:
        return "error", "failed without an exception"
    if report.when == "call" and excinfo.errisinstance((AssertionError, pytest.fail.Exception)):
        return "failed", _message(excinfo.value, with_type=False)
    status = api_status(excinfo.value)
    if status is not None and platform_fault(status) and report.when != "teardown":
        return "failed", _message(excinfo.value, with_type=False)
    where = "while cleaning up" if report.when == "teardown" else "while running"
    if report.when == "setup":
        where = "while preparing"
    return "error", f"{where}: {_message(excinfo.value, with_type=True)}"


def check_skip(
    call: pytest.CallInfo[None], check_id: str, allowed: dict[str, str], message: str
) -> tuple[CheckStatus, str, str]:
    """A skip stands only for a condition the check's requirements list; (status, message,
    condition). Any other skip is kaic's error, so that nothing passes as not applicable by
    accident."""
    exc = call.excinfo.value if call.excinfo else None
    condition = getattr(exc, "condition", None)
    if condition is None:
        why = f"kaic skipped {check_id} without naming a not-applicable condition: {message}"
        return "error", why, ""
    if condition not in allowed:
        lists = ", ".join(allowed) or "none"
        why = (
            f"kaic skipped {check_id} for {condition!r}, a condition none of its "
            f"requirements lists (they list: {lists})"
        )
        return "error", why, ""
    return "skipped", message, str(condition)


def _message(exc: BaseException, *, with_type: bool) -> str:
    said = forbidden_message(exc) or explain(exc)
    if said:
        return said[:MAX_MESSAGE]
    text = str(exc).strip()
    if isinstance(exc, AssertionError) and text.startswith("assert "):
        text = text.splitlines()[0]
    if with_type and not isinstance(exc, AssertionError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:MAX_MESSAGE]


# How pytest names the skip in its report ("Skipped: why", or a subclass by its full name).
_SKIP_PREFIXES = ("Skipped: ", f"{NotApplicable.__module__}.{NotApplicable.__qualname__}: ",
                  f"{NotApplicable.__qualname__}: ")  # fmt: skip


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return next((reason.removeprefix(p) for p in _SKIP_PREFIXES if reason.startswith(p)),
                    reason)  # fmt: skip
    return str(longrepr or "")


@dataclass
class Accumulator:
    """Merges the setup/call/teardown phases of each check into one CheckResult."""

    results: dict[str, CheckResult] = field(default_factory=dict)
    unfinished: set[str] = field(default_factory=set)  # set up, but no call phase reported

    def add(self, data: dict[str, Any], duration: float) -> CheckResult:
        check_id = str(data["check"])
        result = self.results.get(check_id)
        if result is None:
            result = self.results[check_id] = CheckResult(id=check_id, status="passed")
        result.duration_s += duration
        status: CheckStatus = data["status"]
        if data["when"] == "setup" and status == "passed":
            self.unfinished.add(check_id)
        elif data["when"] == "call":
            self.unfinished.discard(check_id)
        if data["when"] == "teardown":
            if status == "error" and result.status == "passed":
                result.status, result.message = "error", data["message"]
        elif result.status == "passed" and status != "passed":
            result.status, result.message = status, data["message"]
        if data.get("condition"):
            result.condition = str(data["condition"])
        if data.get("timing"):
            result.timing = dict(data["timing"])
        if data.get("evidence"):
            result.objects = list(data["evidence"].get("objects", []))
            result.observed = dict(data["evidence"].get("observed", {}))
            result.manifests = list(data["evidence"].get("manifests", []))
        return result

    def final(self, reason: str) -> dict[str, CheckResult]:
        """The outcomes, with checks that never finished their call phase as errors."""
        for check_id in self.unfinished:
            result = self.results[check_id]
            if result.status == "passed":
                result.status, result.message = "error", f"did not finish: {reason}"
        return self.results


class CheckListener:
    """Base of the pytest plugin objects told of each check once it has finished (teardown
    included): the terminal's progress, Sonobuoy's, Hydrophone's e2e.log."""

    def check_finished(self, result: CheckResult) -> None:
        raise NotImplementedError

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "kaic", None)
        if not data:
            return
        accumulator: Accumulator = self.__dict__.setdefault("_kaic_accumulator", Accumulator())
        result = accumulator.add(data, report.duration)
        if report.when == "teardown":
            self.check_finished(result)
