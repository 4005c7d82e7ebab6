"""The pytest plugin: kaic's options, check collection and selection, outcomes and reports.

Inert in a pytest session that collects no kaic check: `pytest --help` and unrelated test suites
never touch a cluster. The cluster is first contacted by the `cluster` fixture of a check.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conformance.checks.registry import MARKER, discover, is_check_module
from conformance.cluster import meter
from conformance.errors import KaicError
from conformance.fixtures import (
    EVIDENCE_KEY,
    FAILED_KEY,
    SETTINGS_KEY,
    check_id,
    cluster,
    cluster_info,
    evidence,
    kaic_settings,
    kube,
    namespace,
    profile,
)
from conformance.outcomes import Accumulator, check_skip, classify
from conformance.profiles import conditions_of, load_profile
from conformance.selection import new_run_id, select_checks, validate_run_id
from conformance.settings import (
    ACCELERATORS,
    ALLOCATION_MODES,
    DEFAULT_PROFILE,
    EPP_IMAGE,
    MODEL_HEADER,
    OBSERVE_WINDOW_S,
    OPERATORS,
    PROFILE_HELP,
    PdImages,
    Settings,
    gateway_ref,
    pd_images,
    settings_from,
)

__all__ = [
    "check_id",
    "cluster",
    "cluster_info",
    "evidence",
    "kaic_settings",
    "kube",
    "namespace",
    "profile",
]


class RunState:
    """What the controlling process gathers while checks run (on xdist, from every worker)."""

    def __init__(self) -> None:
        self.accumulator = Accumulator()
        self.started = datetime.now(UTC)
        self.started_monotonic = time.monotonic()


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kaic", "kaic: Kubernetes AI conformance")
    group.addoption("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    group.addoption("--context", help="kubeconfig context (default: its current-context)")
    group.addoption(
        "--in-cluster", action="store_true", help="use the pod's service account credentials"
    )
    group.addoption(
        "--profile",
        default=DEFAULT_PROFILE,
        help=PROFILE_HELP,
    )
    group.addoption(
        "--check",
        action="append",
        default=[],
        metavar="ID",
        help="run only these check ids (globs allowed; repeatable)",
    )
    group.addoption(
        "--skip",
        action="append",
        default=[],
        metavar="ID",
        help="do not run these check ids (globs allowed; repeatable)",
    )
    group.addoption(
        "--accelerator",
        choices=ACCELERATORS,
        default="auto",
        help="accelerator vendor to probe (default: auto-detect from nodes)",
    )
    group.addoption(
        "--allocation-mode",
        choices=ALLOCATION_MODES,
        default="auto",
        help="how pods get accelerators (default: DRA if devices are published, else the plugin)",
    )
    group.addoption(
        "--operator",
        action="append",
        default=[],
        choices=OPERATORS,
        help="operator to verify for robust_controller (repeatable; default: detect)",
    )
    group.addoption(
        "--prometheus-url",
        default=None,
        help="the platform's Prometheus (default: found among the cluster's Services)",
    )
    group.addoption(
        "--metrics-endpoint",
        default=None,
        help="the accelerator metrics exporter's /metrics URL (default: found by its pods)",
    )
    group.addoption(
        "--autoscaler-node-group",
        default=None,
        help="the accelerator node group cluster_autoscaling grows (default: discovered)",
    )
    group.addoption(
        "--autoscaler-timeout",
        type=_positive_float,
        default=900.0,
        help="seconds a node group may take to grow, and again to shrink (default: 900)",
    )
    group.addoption(
        "--observe-window",
        type=_positive_float,
        default=OBSERVE_WINDOW_S,
        help="seconds checks watch for what must not happen (default: 15)",
    )
    group.addoption(
        "--gateway",
        default=None,
        type=gateway_ref,
        help="NAMESPACE/NAME of a Gateway to test instead of the suite's own",
    )
    group.addoption(
        "--gateway-class",
        default=None,
        help="the GatewayClass of the suite's own Gateways (default: first Accepted)",
    )
    group.addoption(
        "--model-header",
        default=MODEL_HEADER,
        help=f"the header the platform routes on the model by ({MODEL_HEADER})",
    )
    group.addoption(
        "--epp-image", default=EPP_IMAGE, help="the endpoint picker the InferencePool checks deploy"
    )
    group.addoption(
        "--pd-images", type=pd_images, default=PdImages(),
        help="llm-d images the disaggregated-inference check deploys (ROLE=IMAGE,...)",
    )  # fmt: skip
    group.addoption(
        "--timeout-scale",
        type=_positive_float,
        default=1.0,
        help="multiply every wait's timeout (slow clusters: 2, 3, ...)",
    )
    group.addoption(
        "--keep-on-failure",
        action="store_true",
        help="keep the namespace and objects of failed checks for inspection",
    )
    group.addoption(
        "--output", help="write results.json, junit.xml, summary.md and report.html here"
    )
    group.addoption("--run-id", help="label value marking this run's objects (default: generated)")


def _settings(config: pytest.Config) -> Settings:
    opt = config.option
    worker_input: dict[str, Any] | None = getattr(config, "workerinput", None)
    run_id = (worker_input or {}).get("kaic_run_id") or opt.run_id or new_run_id()
    return settings_from(opt, validate_run_id(run_id))


class _XdistHooks:
    @staticmethod
    def pytest_configure_node(node: Any) -> None:
        node.workerinput["kaic_run_id"] = node.config.stash[SETTINGS_KEY].run_id


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(id, requirements, pod_security): a kaic conformance check"
    )
    try:
        config.stash[SETTINGS_KEY] = _settings(config)
    except KaicError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(RunCollector(config), "kaic-collector")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "kaic-xdist")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if is_check_module(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def selected_check_ids(settings: Settings, extra_checks: Iterable[str] = ()) -> list[str]:
    """The checks this run executes; raises KaicError on an unknown profile or check id.

    `extra_checks` are checks collected from outside the package (a user's own test files).
    """
    known = set(discover()) | set(extra_checks)
    profile = load_profile(settings.profile, known_checks=known)
    return select_checks(profile, known, settings.checks, settings.skips)


def _mark(item: pytest.Item) -> pytest.Mark:
    mark = item.get_closest_marker(MARKER)
    assert mark is not None
    return mark


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    kaic_items = [i for i in items if i.get_closest_marker(MARKER)]
    if not kaic_items:
        return
    try:
        collected = {str(_mark(i).args[0]) for i in kaic_items}
        chosen = set(selected_check_ids(config.stash[SETTINGS_KEY], collected))
    except KaicError as exc:
        raise pytest.UsageError(str(exc)) from None
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        mark = item.get_closest_marker(MARKER)
        (drop if mark and mark.args[0] not in chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER):
        meter.reset()  # from the check's fixtures to its cleanup


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return report
    status, message = classify(call, report)
    condition = ""
    if status == "skipped":
        requirements = tuple(mark.kwargs.get("requirements", ()))
        allowed = conditions_of(item.config.stash[SETTINGS_KEY].profile, requirements)
        status, message, condition = check_skip(call, str(mark.args[0]), allowed, message)
    if status in ("failed", "error"):
        item.stash[FAILED_KEY] = True
    data: dict[str, Any] = {
        "check": str(mark.args[0]),
        "when": report.when,
        "status": status,
        "message": message,
    }
    if condition:
        data["condition"] = condition
    ev = item.stash.get(EVIDENCE_KEY, None)
    if ev is not None and report.when in ("call", "teardown"):
        data["evidence"] = ev.to_json()
    if report.when == "teardown":
        data["timing"] = meter.current().to_json()
    report.kaic = data  # type: ignore[attr-defined]  # travels to the xdist controller
    return report


class RunCollector:
    """Registered on the controlling process: merges check outcomes, writes reports at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state = RunState()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "kaic", None)
        if data:
            self.state.accumulator.add(data, report.duration)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        settings = self.config.stash[SETTINGS_KEY]
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        if not self.state.accumulator.results and settings.output is None:
            return

        try:
            self._finish(settings, exitstatus)
        except KaicError as exc:
            sys.stderr.write(f"kaic: cannot write the reports: {exc}\n")

    def _finish(self, settings: Settings, exitstatus: int) -> None:
        from conformance.finish import finish_run

        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        reason = "the run was interrupted" if interrupted else "its worker stopped"
        finish_run(
            settings,
            self.state.accumulator.final(reason),
            self.state.started,
            time.monotonic() - self.state.started_monotonic,
            interrupted=interrupted,
        )
