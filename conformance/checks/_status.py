"""Reading `status.conditions` (and lists of conditions kept elsewhere, e.g. per parent)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def find(conditions: list[Obj] | None, kind: str) -> Obj | None:
    return next((dict(c) for c in conditions or [] if c.get("type") == kind), None)


def condition(obj: Obj | None, kind: str) -> Obj | None:
    return find(((obj or {}).get("status") or {}).get("conditions"), kind)


def is_true(conditions: list[Obj] | None, kind: str) -> bool:
    return (find(conditions, kind) or {}).get("status") == "True"


def holds(obj: Obj | None, kind: str) -> bool:
    """Whether the object's `status.conditions` has `kind` True (e.g. a pod's Ready)."""
    return is_true(((obj or {}).get("status") or {}).get("conditions"), kind)


def brief(conditions: list[Obj] | None) -> str:
    """`Accepted=True (Accepted), Programmed=False (AddressNotAssigned: ...)`"""
    out = []
    for c in conditions or []:
        why = c.get("reason", "")
        if c.get("status") != "True" and c.get("message"):
            why = f"{why}: {str(c['message'])[:120]}"
        out.append(f"{c.get('type')}={c.get('status')} ({why})")
    return ", ".join(out) or "no conditions"
