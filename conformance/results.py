"""What a run found: check outcomes, rolled up into requirement statuses and a verdict.

Roll-up rules (also in docs/results.md):

- a requirement whose profile entry lists no checks is `not-implemented`;
- one whose checks were all deselected (`--check`/`--skip`) is `not-run`;
- otherwise: any check failed -> `failed`; else any error -> `error`; else all skipped ->
  `not-applicable` (the skip reasons say why); else `passed`.

Verdict: a MUST that failed, errored or is not implemented -> `not-conformant`; else a SHOULD
that is not `passed`, a MUST without a condition that is `not-applicable`, or any requirement
that was not run -> `partial`; else `conformant`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from conformance.profiles import Profile, Requirement

CheckStatus = Literal["passed", "failed", "error", "skipped"]
RequirementStatus = Literal[
    "passed", "failed", "error", "not-applicable", "not-implemented", "not-run"
]
Verdict = Literal["conformant", "partial", "not-conformant"]

CHECK_STATUSES: tuple[CheckStatus, ...] = ("passed", "failed", "error", "skipped")
REQUIREMENT_STATUSES: tuple[RequirementStatus, ...] = (
    "passed",
    "failed",
    "error",
    "not-applicable",
    "not-implemented",
    "not-run",
)
VERDICTS: tuple[Verdict, ...] = ("conformant", "partial", "not-conformant")
EXIT_CODES: Mapping[Verdict, int] = {"conformant": 0, "not-conformant": 1, "partial": 3}
EXIT_USAGE = 2


@dataclass
class CheckResult:
    id: str
    status: CheckStatus
    duration_s: float = 0.0
    message: str = ""
    objects: list[str] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)
    manifests: list[dict[str, Any]] = field(default_factory=list)
    condition: str = ""  # of a skipped check: the not-applicable condition it met
    # Where the time went (cluster/meter.py): seconds blocked on the cluster, API requests.
    timing: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {"objects": list(self.objects), "observed": dict(self.observed)}
        if self.manifests:
            evidence["manifests"] = list(self.manifests)
        out = {
            "id": self.id,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "message": self.message,
            "evidence": evidence,
        }
        if self.condition:
            out["condition"] = self.condition
        if self.timing:
            out["timing"] = dict(self.timing)
        return out


@dataclass
class RequirementResult:
    id: str
    level: str
    status: RequirementStatus
    checks: list[CheckResult]
    category: str = ""
    description: str = ""
    condition: str | None = None
    reason: str = ""
    not_applicable_when: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "level": self.level,
            "status": self.status,
            "category": self.category,
            "description": self.description,
            "checks": [c.to_json() for c in self.checks],
        }
        if self.condition:
            out["condition"] = self.condition
        if self.reason:
            out["reason"] = self.reason
        if self.not_applicable_when:
            out["not_applicable_when"] = dict(self.not_applicable_when)
        return out


def requirement_status(
    requirement: Requirement, results: Mapping[str, CheckResult]
) -> tuple[RequirementStatus, list[CheckResult], str]:
    """Status of one requirement from the outcomes of the checks that ran; plus a reason."""
    if not requirement.checks:
        return "not-implemented", [], "no check verifies this requirement yet"
    ran = [results[c] for c in requirement.checks if c in results]
    if not ran:
        return "not-run", [], "its checks were deselected"
    statuses = {r.status for r in ran}
    if "failed" in statuses:
        return "failed", ran, _first_message(ran, "failed")
    if "error" in statuses:
        return "error", ran, _first_message(ran, "error")
    if statuses == {"skipped"}:
        return "not-applicable", ran, _first_message(ran, "skipped")
    return "passed", ran, ""


def _first_message(results: Iterable[CheckResult], status: CheckStatus) -> str:
    return next((f"{r.id}: {r.message}" for r in results if r.status == status), "")


def roll_up(profile: Profile, results: Mapping[str, CheckResult]) -> list[RequirementResult]:
    """Each requirement's status from its checks' outcomes (`requirement_status`).

    A check's outcome says who is at fault (`outcomes.classify`): `failed` when the cluster
    answered and the answer was wrong or missing (an assertion, a wait that timed out, a 5xx
    from an admission webhook, an aggregated API or the API server); `error` only when kaic
    itself could not ask (its own bug, a 4xx to its request, its credentials, an unreachable
    API server). So a requirement is `failed` if any check failed, else `error` if any could
    not tell, else `not-applicable` if every check skipped, else `passed`.
    """
    rolled = []
    for req in profile.requirements:
        status, checks, reason = requirement_status(req, results)
        rolled.append(
            RequirementResult(
                id=req.id,
                level=req.level,
                status=status,
                checks=checks,
                category=req.category,
                description=req.description,
                condition=req.condition,
                reason=reason,
                not_applicable_when=dict(req.not_applicable_when),
            )
        )
    return rolled


def verdict(requirements: Iterable[RequirementResult]) -> Verdict:
    partial = False
    for req in requirements:
        if req.level == "MUST":
            if req.status in ("failed", "error", "not-implemented"):
                return "not-conformant"
            if req.status == "not-run" or (req.status == "not-applicable" and not req.condition):
                partial = True
        elif req.status != "passed":
            partial = True
    return "partial" if partial else "conformant"


SCHEMA_ID = "kaic.results/v1"


@dataclass
class Run:
    """One run of a profile against one cluster: what results.json holds."""

    profile: str
    profile_title: str
    run_id: str
    cluster: dict[str, Any]
    started: str
    finished: str
    duration_s: float
    requirements: list[RequirementResult]
    kaic_version: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return verdict(self.requirements)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "profile": self.profile,
            "profile_title": self.profile_title,
            "run_id": self.run_id,
            "kaic_version": self.kaic_version,
            "cluster": dict(self.cluster),
            "started": self.started,
            "finished": self.finished,
            "duration_s": round(self.duration_s, 3),
            "verdict": self.verdict,
            "notes": list(self.notes),
            "requirements": [r.to_json() for r in self.requirements],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            profile=data["profile"],
            profile_title=data.get("profile_title", data["profile"]),
            run_id=data.get("run_id", ""),
            cluster=dict(data.get("cluster", {})),
            started=data["started"],
            finished=data["finished"],
            duration_s=float(data["duration_s"]),
            kaic_version=data.get("kaic_version", ""),
            notes=list(data.get("notes", [])),
            requirements=[
                RequirementResult(
                    id=r["id"],
                    level=r["level"],
                    status=r["status"],
                    category=r.get("category", ""),
                    description=r.get("description", ""),
                    condition=r.get("condition"),
                    reason=r.get("reason", ""),
                    not_applicable_when=dict(r.get("not_applicable_when", {})),
                    checks=[
                        CheckResult(
                            id=c["id"],
                            status=c["status"],
                            duration_s=float(c.get("duration_s", 0)),
                            message=c.get("message", ""),
                            objects=list(c.get("evidence", {}).get("objects", [])),
                            observed=dict(c.get("evidence", {}).get("observed", {})),
                            manifests=list(c.get("evidence", {}).get("manifests", [])),
                            condition=c.get("condition", ""),
                            timing=dict(c.get("timing", {})),
                        )
                        for c in r.get("checks", [])
                    ],
                )
                for r in data["requirements"]
            ],
        )
