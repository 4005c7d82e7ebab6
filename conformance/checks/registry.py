"""Declaring checks (a pytest marker) and finding every check the package ships."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from conformance.profiles import CHECK_ID

MARKER = "kaic_check"
CHECKS_DIR = Path(__file__).resolve().parent
_NOT_CHECK_MODULES = {"registry"}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CheckInfo:
    id: str
    requirements: tuple[str, ...]
    module: str
    function: str
    summary: str
    pod_security: str = "restricted"


def check(
    check_id: str, *, requirements: Iterable[str], pod_security: str = "restricted"
) -> Callable[[F], F]:
    """Mark a test function as the kaic check `check_id` serving `requirements`.

    `pod_security` is the Pod Security level enforced on the check's namespace; loosen it only
    when the probe cannot run under `restricted` (e.g. it needs host devices).
    """
    if not CHECK_ID.match(check_id):
        raise ValueError(f"check id {check_id!r} must look like 'area.behaviour-name'")
    reqs = tuple(requirements)
    if not reqs:
        raise ValueError(f"check {check_id} must serve at least one requirement")
    if pod_security not in ("restricted", "baseline", "privileged"):
        raise ValueError(f"check {check_id}: unknown pod_security level {pod_security!r}")
    mark = getattr(pytest.mark, MARKER)(check_id, requirements=reqs, pod_security=pod_security)

    def decorate(fn: F) -> F:
        return mark(fn)  # type: ignore[no-any-return]

    return decorate


def info_from_mark(mark: pytest.Mark, module: str, function: str, doc: str | None) -> CheckInfo:
    summary = inspect.cleandoc(doc).splitlines()[0] if doc else function
    return CheckInfo(
        id=str(mark.args[0]),
        requirements=tuple(mark.kwargs.get("requirements", ())),
        module=module,
        function=function,
        summary=summary,
        pod_security=str(mark.kwargs.get("pod_security", "restricted")),
    )


def check_modules() -> list[str]:
    return [
        f"{__package__}.{m.name}"
        for m in pkgutil.iter_modules([str(CHECKS_DIR)])
        if not m.name.startswith("_") and m.name not in _NOT_CHECK_MODULES
    ]


def is_check_module(path: Path) -> bool:
    return (
        path.suffix == ".py"
        and path.parent.resolve() == CHECKS_DIR
        and not path.name.startswith("_")
        and path.stem not in _NOT_CHECK_MODULES
    )


def _checks_in(module: ModuleType) -> list[CheckInfo]:
    found: list[CheckInfo] = []
    for name, fn in vars(module).items():
        if not callable(fn) or not name.startswith("test"):
            continue
        for mark in getattr(fn, "pytestmark", []):
            if mark.name == MARKER:
                found.append(info_from_mark(mark, module.__name__, name, fn.__doc__))
    return found


def discover() -> dict[str, CheckInfo]:
    """Every check shipped in `conformance.checks`, by id (import only; touches no cluster)."""
    catalog: dict[str, CheckInfo] = {}
    for name in check_modules():
        for info in _checks_in(importlib.import_module(name)):
            if info.id in catalog:
                other = catalog[info.id]
                raise RuntimeError(
                    f"check id {info.id} declared twice: {other.module}.{other.function} "
                    f"and {info.module}.{info.function}"
                )
            catalog[info.id] = info
    return catalog
