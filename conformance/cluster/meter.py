"""Where a check's time goes: API requests (watches among them), polls of what has no watch, and
the seconds spent blocked on the cluster (requests, watches, poll intervals, observed windows).
The rest of a check's duration is the suite's own overhead. One check runs at a time in a
process, so the meter is the process's; results.json carries it per check as `timing`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Meter:
    requests: int = 0
    watches: int = 0
    polls: int = 0
    cluster_wait_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster_wait_s": round(self.cluster_wait_s, 3),
            "api_requests": self.requests,
            "watches": self.watches,
            "polls": self.polls,
        }


_current = Meter()
_lock = threading.Lock()
_depth = threading.local()


def reset() -> Meter:
    """Start a new meter (at a check's setup) and return it."""
    global _current
    _current = Meter()
    return _current


def current() -> Meter:
    return _current


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Time spent waiting on the cluster; nested blocks count once."""
    depth = getattr(_depth, "n", 0)
    _depth.n = depth + 1
    started = time.monotonic()
    try:
        yield
    finally:
        _depth.n = depth
        if depth == 0:
            with _lock:
                _current.cluster_wait_s += time.monotonic() - started


def request(*, watch: bool) -> None:
    with _lock:
        _current.requests += 1
        _current.watches += int(watch)


def poll() -> None:
    with _lock:
        _current.polls += 1
