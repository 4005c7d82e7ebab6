"""One sandbox per test session (built into the cache, reused when present), broken and mended
in place for most faults (`broken`), plus sandboxes started with components left out.

Tests on such a sandbox say so with `@pytest.mark.box(without=[...])` and take the `box` fixture;
they run after all others, grouped by sandbox, so that each one is started once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from conformance import sandbox as sbx
from conformance.cluster import Cluster, ConnectOptions, connect
from conformance.sandbox.live_faults import break_faults, mend_faults

# `KAIC_TEST_SANDBOX=~/.local/state/kaic/sandbox pytest tests/integration -k ...`: the tests use
# that running sandbox as the default one instead of starting their own (a quicker loop).
REUSE_ENV = "KAIC_TEST_SANDBOX"

MakeSandbox = Callable[..., sbx.Sandbox]
Key = tuple[tuple[str, ...], tuple[str, ...]]
# The sandbox of the tests that need Kueue, LWS, the DRA driver, the GPU exporter, the metrics
# adapter, kube-proxy, the autoscaler, KubeRay or Trainer left out: one for them all (each looks
# only at what the component it names does; Prometheus stays, to show what it finds without an
# exporter).
BARE = [
    "kueue", "lws", "dra-driver", "accelerator-exporter", "prometheus-adapter", "kube-proxy",
    "autoscaler", "kuberay", "kubeflow-trainer",
]  # fmt: skip


def box_key(without: Sequence[str] = (), breaks: Sequence[str] = (), gateway: bool = False) -> Key:
    """Which sandbox: faulted ones leave the gateway out (it adds tens of seconds to each start)
    unless the test asks for it with `gateway=True`, and the real nodes (no fault is made on
    them yet, and nothing but test_real_nodes' pods runs there)."""
    if without or breaks:
        without = [*without, "real-nodes", *([] if gateway else ["gateway"])]
    return tuple(sorted(set(without))), tuple(sorted(set(breaks)))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "box(without=[], breaks=[], gateway=False): the sandbox the `box` fixture gives"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def order(item: pytest.Item) -> tuple[int, Key]:
        marker = item.get_closest_marker("box")
        return (0, ((), ())) if marker is None else (1, box_key(**marker.kwargs))

    items.sort(key=order)  # stable: within a group, the order they were written in


def interruptible(cmd: Sequence[str]) -> subprocess.Popen[str]:
    """`cmd` started as from a terminal, where Ctrl-C interrupts: with SIGINT's default action
    even when these tests were started in the background (a shell's `&` ignores SIGINT, the
    ignoring is inherited, and Python then installs no KeyboardInterrupt handler)."""
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


@contextlib.contextmanager
def broken(box: sbx.Sandbox, *faults: str) -> Iterator[sbx.Sandbox]:
    """`box` with `faults` applied for the block (kaic sandbox break), mended after it, also when
    the block fails."""
    break_faults(box.directory, faults, print)
    try:
        yield sbx.attach(box.directory)
    finally:
        mend_faults(box.directory, faults, print)


@pytest.fixture(scope="session")
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeSandbox]:
    """Start a sandbox with components left out / faults; one per combination, shared.

    The default sandbox lives for the whole session; of the others only the latest is kept (tests
    ask for them one at a time). Keeping them all would exhaust the host's inotify instances
    (`fs.inotify.max_user_instances`, 128 by default), which every controller needs.
    """
    boxes: dict[Key, sbx.Sandbox] = {}
    default = box_key()
    reused = os.environ.get(REUSE_ENV)
    if reused:  # a contributor's running sandbox: used as the default one, left running
        if not sbx.is_running(Path(reused)):
            raise pytest.UsageError(f"{REUSE_ENV}={reused}: no sandbox runs there")
        boxes[default] = sbx.attach(Path(reused))

    def make(
        without: Sequence[str] = (), breaks: Sequence[str] = (), gateway: bool = False
    ) -> sbx.Sandbox:
        key = box_key(without, breaks, gateway)
        if key not in boxes:
            for other in [k for k in boxes if k != default]:
                sbx.down(boxes.pop(other).directory)
            directory = tmp_path_factory.mktemp("-".join(["sandbox", *key[0], *key[1]]))
            boxes[key] = sbx.up(directory, *key)  # stops what it started if it fails
        return boxes[key]

    try:
        yield make
    finally:
        for key, box in boxes.items():
            if not (reused and key == default):
                sbx.down(box.directory)


@pytest.fixture(scope="session")
def sandbox_box(sandbox_factory: MakeSandbox) -> sbx.Sandbox:
    return sandbox_factory()


@pytest.fixture
def box(request: pytest.FixtureRequest, sandbox_factory: MakeSandbox) -> sbx.Sandbox:
    """The sandbox the test's `box` marker names."""
    marker = request.node.get_closest_marker("box")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses `box` without a box marker")
    return sandbox_factory(**marker.kwargs)


@pytest.fixture
def sandbox(sandbox_box: sbx.Sandbox) -> sbx.Sandbox:
    """The default sandbox (every component, nothing broken), as its state says now: a mended
    fault may have restarted a process (Kueue) under a new pid."""
    return sbx.attach(sandbox_box.directory)


@pytest.fixture(scope="session")
def admin(sandbox_box: sbx.Sandbox) -> Cluster:
    return connect(ConnectOptions(kubeconfig=str(sandbox_box.kubeconfig)), run_id="integration")


def admin_of(box: sbx.Sandbox) -> Cluster:
    return connect(ConnectOptions(kubeconfig=str(box.kubeconfig)), run_id="integration")
