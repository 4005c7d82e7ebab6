"""End of a run: sweep its objects, roll outcomes up, and write the reports."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from conformance.checks.registry import discover
from conformance.cluster import connect
from conformance.cluster.cleanup import sweep
from conformance.errors import KaicError
from conformance.profiles import load_profile
from conformance.report import write_reports
from conformance.results import CheckResult, Run, roll_up
from conformance.selection import select_checks
from conformance.settings import Settings

SWEEP_WAIT_S = 120


def kaic_version() -> str:
    try:
        return version("kaic")
    except PackageNotFoundError:
        return "0+unknown"


def finish_run(
    settings: Settings,
    results: Mapping[str, CheckResult],
    started: datetime,
    duration_s: float,
    *,
    interrupted: bool = False,
) -> Run:
    profile = load_profile(settings.profile)  # check ids were validated at collection
    known = set(discover()) | set(results) | set(profile.check_ids())
    selected = select_checks(profile, known, settings.checks, settings.skips)
    outcomes = dict(results)
    why = "the run was interrupted" if interrupted else "no outcome was reported (worker crash?)"
    for check_id in selected:
        outcomes.setdefault(check_id, CheckResult(check_id, "error", message=f"did not run: {why}"))
    notes: list[str] = []
    cluster_meta = _sweep_and_describe(settings, notes)
    run = Run(
        profile=profile.name,
        profile_title=profile.title,
        run_id=settings.run_id,
        cluster=cluster_meta,
        started=_rfc3339(started),
        finished=_rfc3339(started + timedelta(seconds=duration_s)),
        duration_s=duration_s,
        requirements=roll_up(profile, {k: v for k, v in outcomes.items() if k in selected}),
        kaic_version=kaic_version(),
        notes=notes,
    )
    if settings.output is not None:
        write_reports(run, settings.output)
    return run


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _sweep_and_describe(settings: Settings, notes: list[str]) -> dict[str, Any]:
    """Delete what the run left (kept namespaces of failed checks excepted) and name the cluster."""
    try:
        cluster = connect(settings.connect, settings.run_id)
    except KaicError as exc:
        notes.append(f"could not connect after the run to clean up: {exc}")
        return {"server": "", "version": "", "context": settings.connect.context or ""}
    meta = {"server": cluster.server, "version": "", "context": cluster.context}
    try:
        meta["version"] = cluster.server_version()
        result = sweep(cluster, settings.run_id, include_kept=False, wait_s=SWEEP_WAIT_S)
        notes.extend(f"cleanup problem: {p}" for p in result.problems)
    except Exception as exc:
        notes.append(f"cleanup after the run failed: {type(exc).__name__}: {exc}")
    if settings.keep_on_failure:
        notes.append(
            "namespaces of failed checks were kept (--keep-on-failure); "
            f"remove them with: kaic cleanup --run-id {settings.run_id}"
        )
    return meta
