"""The labels every object kaic creates carries, so that nothing is left behind."""

from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kaic"
RUN_ID = "kaic.dev/run-id"
CHECK = "kaic.dev/check"
KEEP = "kaic.dev/keep"


def kaic_labels(run_id: str, check_id: str | None = None) -> dict[str, str]:
    labels = {MANAGED_BY: MANAGER, RUN_ID: run_id}
    if check_id:
        labels[CHECK] = check_id
    return labels


def selector(run_id: str | None = None, *, include_kept: bool = True) -> str:
    """Label selector for kaic's objects, of one run or of all runs."""
    parts = [f"{MANAGED_BY}={MANAGER}"]
    if run_id:
        parts.append(f"{RUN_ID}={run_id}")
    if not include_kept:
        parts.append(f"{KEEP}!=true")
    return ",".join(parts)
