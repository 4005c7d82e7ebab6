"""One sandbox per test session (built into the cache, reused when present), plus faulted ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from conformance import sandbox as sbx
from conformance.cluster import Cluster, ConnectOptions, connect

MakeSandbox = Callable[..., sbx.Sandbox]


@pytest.fixture(scope="session")
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeSandbox]:
    """Start a sandbox with components left out / faults; one per combination, shared.

    The default sandbox lives for the whole session; of the faulted ones only the latest is kept
    (tests ask for them one at a time). Keeping them all would exhaust the host's inotify
    instances (`fs.inotify.max_user_instances`, 128 by default), which every controller needs.
    Faulted sandboxes leave the gateway out (it adds tens of seconds to each start) unless the
    test asks for it with `gateway=True`.
    """
    boxes: dict[tuple[tuple[str, ...], tuple[str, ...]], sbx.Sandbox] = {}
    default: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def make(
        without: Sequence[str] = (), breaks: Sequence[str] = (), gateway: bool = False
    ) -> sbx.Sandbox:
        if (without or breaks) and not gateway:
            without = sorted({*without, "gateway"})
        key = (tuple(sorted(without)), tuple(sorted(breaks)))
        if key not in boxes:
            for other in [k for k in boxes if k != default]:
                sbx.down(boxes.pop(other).directory)
            directory = tmp_path_factory.mktemp("-".join(["sandbox", *key[0], *key[1]]))
            boxes[key] = sbx.up(directory, without, breaks)  # stops what it started if it fails
        return boxes[key]

    try:
        yield make
    finally:
        for box in boxes.values():
            sbx.down(box.directory)


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
