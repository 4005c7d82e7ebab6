"""Waiting on the cluster by watching (list, then watch from that version), with a deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kubernetes.client import ApiException

from conformance.cluster import meter
from conformance.failures import CheckFailure, fail

T = TypeVar("T")
Obj = dict[str, Any]


class WaitTimeout(CheckFailure):
    """The cluster did not reach the awaited state in time."""


def wait_for(
    resource: Any,
    condition: Callable[[list[Obj]], T | None],
    *,
    awaiting: str,
    timeout_s: float,
    namespace: str | None = None,
    field_selector: str | None = None,
    label_selector: str | None = None,
    next_step: str = "",
) -> T:
    deadline = time.monotonic() + timeout_s
    state: dict[str, Obj] = {}

    def evaluate() -> T | None:
        return condition(list(state.values()))

    while True:
        listing = resource.get(
            namespace=namespace, field_selector=field_selector, label_selector=label_selector
        ).to_dict()
        state = {_key(o): dict(o) for o in listing.get("items") or []}
        version = listing["metadata"]["resourceVersion"]
        result = evaluate()
        if result:
            return result
        relist = False
        while not relist:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(
                    f"timed out after {timeout_s:.0f}s waiting for {awaiting}; "
                    f"last state: {describe_all(state.values())}"
                    + (f". Next: {next_step}" if next_step else "")
                )
            try:
                for event in resource.watch(
                    namespace=namespace,
                    field_selector=field_selector,
                    label_selector=label_selector,
                    resource_version=version,
                    timeout=max(1, math.ceil(remaining)),
                ):
                    raw = event["raw_object"]
                    if event["type"] == "ERROR":
                        relist = True  # 410 Gone or similar: start again from a fresh list
                        break
                    version = raw.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] == "DELETED":
                        state.pop(_key(raw), None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        state[_key(raw)] = raw
                    else:
                        continue
                    result = evaluate()
                    if result:
                        return result
                    if time.monotonic() >= deadline:
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise
                relist = True


def _key(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


MESSAGE_CHARS = 300


def describe(obj: Obj) -> str:
    """A short human summary of an object's state: kind/name, phase, conditions (a false one
    with its reason and message, e.g. the scheduler's for PodScheduled=False), and for a
    ResourceClaim whether it is allocated."""
    meta = obj.get("metadata", {})
    status = obj.get("status") or {}
    parts = []
    if status.get("phase"):
        parts.append(f"phase={status['phase']}")
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type"):
            parts.append(_condition(cond))
    if obj.get("kind") == "ResourceClaim":
        parts.append("allocated" if status.get("allocation") else "not allocated")
    if meta.get("deletionTimestamp"):
        parts.append("deleting")
    name = f"{obj.get('kind', 'object')}/{meta.get('name', '?')}"
    return f"{name}({', '.join(parts)})" if parts else name


def _condition(cond: Obj) -> str:
    text = f"{cond['type']}={cond.get('status')}"
    if cond.get("status") != "False" or not (cond.get("reason") or cond.get("message")):
        return text
    said = ": ".join(str(cond[k]) for k in ("reason", "message") if cond.get(k))
    return f"{text} [{said[:MESSAGE_CHARS]}]"


def describe_all(objects: Iterable[Obj]) -> str:
    described = [describe(o) for o in objects]
    return "; ".join(described[:10]) + (" ..." if len(described) > 10 else "") or "no objects"


def poll_until(
    probe: Callable[[], tuple[T | None, str]],
    *,
    awaiting: str,
    timeout_s: float,
    interval_s: float = 1.0,
) -> T:
    """For what has no watch (a monitoring system's API): call `probe` until it returns a
    result; it also returns a description of what it saw, which the timeout reports."""
    deadline = time.monotonic() + timeout_s
    with meter.blocked():
        while True:
            meter.poll()
            result, seen = probe()
            if result:
                return result
            if time.monotonic() + interval_s > deadline:
                raise WaitTimeout(f"timed out after {timeout_s:.0f}s waiting for {awaiting}; "
                                  f"last seen: {seen}")  # fmt: skip
            time.sleep(interval_s)


def poll_or_fail(
    probe: Callable[[], tuple[T | None, str]],
    *,
    awaiting: str,
    timeout_s: float,
    expected: str,
    next_step: str,
    interval_s: float = 2.0,
) -> T:
    """`poll_until`, failing the check with `expected` (the timeout and last sighting as what
    was observed) and `next_step`."""
    try:
        return poll_until(probe, awaiting=awaiting, timeout_s=timeout_s, interval_s=interval_s)
    except WaitTimeout as exc:
        fail(expected=expected, observed=str(exc), next_step=next_step)
