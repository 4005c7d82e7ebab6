"""One sandbox per test session (built into the cache, reused when present), plus faulted ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from conformance import sandbox as sbx
from conformance.cluster import Cluster, ConnectOptions, connect

MakeSandbox = Callable[..., sbx.Sandbox]


@pytest.fixture(scope="session")
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeSandbox]:
    """Start a sandbox with components left out / faults; one per combination, shared."""
    started: list[Path] = []
    boxes: dict[tuple[tuple[str, ...], tuple[str, ...]], sbx.Sandbox] = {}

    def make(without: Sequence[str] = (), breaks: Sequence[str] = ()) -> sbx.Sandbox:
        key = (tuple(sorted(without)), tuple(sorted(breaks)))
        if key not in boxes:
            directory = tmp_path_factory.mktemp("-".join(["sandbox", *key[0], *key[1]]))
            started.append(directory)
            boxes[key] = sbx.up(directory, without, breaks)
        return boxes[key]

    try:
        yield make
    finally:
        for directory in started:
            sbx.down(directory)


@pytest.fixture(scope="session")
def sandbox_box(sandbox_factory: MakeSandbox) -> sbx.Sandbox:
    return sandbox_factory()


@pytest.fixture(scope="session")
def sandbox(sandbox_box: sbx.Sandbox) -> sbx.Sandbox:
    """The default sandbox (every component, nothing broken)."""
    return sandbox_box


@pytest.fixture(scope="session")
def admin(sandbox: sbx.Sandbox) -> Cluster:
    return connect(ConnectOptions(kubeconfig=str(sandbox.kubeconfig)), run_id="integration")


def admin_of(box: sbx.Sandbox) -> Cluster:
    return connect(ConnectOptions(kubeconfig=str(box.kubeconfig)), run_id="integration")
