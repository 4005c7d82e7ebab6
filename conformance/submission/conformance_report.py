"""A report in the shape of Gateway API's `ConformanceReport`, one profile per run.

Core holds the MUST requirements, extended the SHOULDs. Counted per requirement:
passed -> Passed; failed or error -> Failed; not-implemented or not-run -> Skipped.
Extended lists the SHOULDs that passed as supportedFeatures. A not-applicable requirement is
an unsupported feature (a SHOULD, or a MUST whose condition the
platform does not meet) and, as in Gateway API, left out of the counts; an unconditional MUST
that is not-applicable counts as Skipped. Result: any Failed -> failure; else any Skipped ->
partial; else success.
"""

from __future__ import annotations

from typing import Any, Literal

from conformance.results import RequirementResult, Run

API_VERSION = "kaic.dev/v1alpha1"
Result = Literal["success", "partial", "failure"]


def result_of(statistics: dict[str, int]) -> Result:
    if statistics["Failed"]:
        return "failure"
    if statistics["Skipped"]:
        return "partial"
    return "success"


def _unsupported(req: RequirementResult) -> bool:
    return req.status == "not-applicable" and (req.level != "MUST" or bool(req.condition))


def section(requirements: list[RequirementResult], *, extended: bool) -> dict[str, Any]:
    stats = {"Passed": 0, "Skipped": 0, "Failed": 0}
    skipped: list[str] = []
    failed: list[str] = []
    supported: list[str] = []
    unsupported: list[str] = []
    for req in requirements:
        if _unsupported(req):
            unsupported.append(req.id)
            continue
        if req.status == "passed":
            supported.append(req.id)
            stats["Passed"] += 1
        elif req.status in ("failed", "error"):
            stats["Failed"] += 1
            failed.append(req.id)
        else:
            stats["Skipped"] += 1
            skipped.append(req.id)
    out: dict[str, Any] = {"result": result_of(stats), "statistics": stats}
    if skipped:
        out["skippedTests"] = skipped
    if failed:
        out["failedTests"] = failed
    if extended:
        out["supportedFeatures"] = supported
        out["unsupportedFeatures"] = unsupported
    elif unsupported:
        out["notApplicable"] = unsupported
    return out


def _summary(core: dict[str, Any], extended: dict[str, Any]) -> str:
    words = {"success": "succeeded", "partial": "partially succeeded", "failure": "failed"}
    parts = []
    for name, sec in (("Core", core), ("Extended", extended)):
        stats = sec["statistics"]
        detail = ", ".join(f"{n} {k.lower()}" for k, n in stats.items() if n)
        parts.append(f"{name} tests {words[sec['result']]}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts) + "."


def build_report(run: Run, implementation: dict[str, Any]) -> dict[str, Any]:
    musts = [r for r in run.requirements if r.level == "MUST"]
    shoulds = [r for r in run.requirements if r.level != "MUST"]
    core = section(musts, extended=False)
    extended = section(shoulds, extended=True)
    return {
        "apiVersion": API_VERSION,
        "kind": "ConformanceReport",
        "date": run.finished,
        "kaicVersion": run.kaic_version,
        "runID": run.run_id,
        "kubernetesVersion": run.cluster.get("version", ""),
        "implementation": implementation,
        "profiles": [
            {
                "name": run.profile,
                "summary": _summary(core, extended),
                "verdict": run.verdict,
                "core": core,
                "extended": extended,
            }
        ],
    }
