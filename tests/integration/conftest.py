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
    started: list[Path] = []

    def make(without: Sequence[str] = (), breaks: Sequence[str] = ()) -> sbx.Sandbox:
        name = "-".join(["sandbox", *without, *breaks])
        directory = tmp_path_factory.mktemp(name)
        started.append(directory)
        return sbx.up(directory, without, breaks)

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
