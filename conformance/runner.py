"""`kaic run`: choose the cluster, run the checks through pytest, print and return the verdict."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from conformance.checks.registry import CHECKS_DIR, discover
from conformance.cluster import connect, kubeconfig_configured
from conformance.errors import KaicError
from conformance.plugin import selected_check_ids
from conformance.profiles import AUTO, load_profile, newest_checklist_for, parse_minor
from conformance.progress import ProgressDisplay
from conformance.report import results_json
from conformance.report.render import print_run, stderr_console, stdout_console
from conformance.results import EXIT_USAGE
from conformance.selection import validate_patterns
from conformance.settings import Settings

INTERRUPTED = 130


def pytest_args(settings: Settings, workers: int, verbose: bool) -> list[str]:
    c = settings.connect
    args = [
        str(CHECKS_DIR),
        "-c",
        os.devnull,
        "--rootdir",
        str(CHECKS_DIR),
        "-p",
        "no:cacheprovider",
        "--run-id",
        settings.run_id,
        "--profile",
        settings.profile,
        "--accelerator",
        settings.accelerator,
        "--allocation-mode",
        settings.allocation_mode,
        "--timeout-scale",
        str(c.timeout_scale),
        "--output",
        str(settings.output),
    ]
    if not verbose:
        args += ["-p", "no:terminal"]
    if c.kubeconfig:
        args += ["--kubeconfig", c.kubeconfig]
    if c.context:
        args += ["--context", c.context]
    if c.in_cluster:
        args.append("--in-cluster")
    if settings.keep_on_failure:
        args.append("--keep-on-failure")
    for operator in settings.operators:
        args += ["--operator", operator]
    if settings.prometheus_url:
        args += ["--prometheus-url", settings.prometheus_url]
    if settings.metrics_endpoint:
        args += ["--metrics-endpoint", settings.metrics_endpoint]
    if settings.autoscaler_node_group:
        args += ["--autoscaler-node-group", settings.autoscaler_node_group]
    args += ["--autoscaler-timeout", str(settings.autoscaler_timeout_s)]
    args += ["--observe-window", str(settings.observe_window_s)]
    if settings.gateway:
        args += ["--gateway", settings.gateway]
    if settings.gateway_class:
        args += ["--gateway-class", settings.gateway_class]
    args += [
        "--model-header",
        settings.model_header,
        "--epp-image",
        settings.epp_image,
        "--pd-images",
        settings.pd_images.flag(),
    ]
    for pattern in settings.checks:
        args += ["--check", pattern]
    for pattern in settings.skips:
        args += ["--skip", pattern]
    if workers > 1:
        args += ["-n", str(workers)]
    return args


def resolve_profile(settings: Settings, use_sandbox: bool, console: Console) -> Settings:
    """`--profile auto` (the default): the newest CNCF checklist the cluster's version meets."""
    if settings.profile != AUTO:
        return settings
    known = discover()  # a mistyped check id is reported before any connection
    validate_patterns(settings.checks, known, "--check")
    validate_patterns(settings.skips, known, "--skip")
    if not use_sandbox and kubeconfig_configured(settings.connect):
        version = connect(settings.connect, settings.run_id).server_version()
    else:
        from conformance.sandbox.build import KUBERNETES_VERSION as version
    minor = parse_minor(version)
    name = newest_checklist_for(minor[1] if minor else None)
    console.print(
        f"Profile {name}: the newest CNCF checklist that Kubernetes {version} meets "
        "(--profile chooses another)"
    )
    return replace(settings, profile=name)


@contextmanager
def target_cluster(
    settings: Settings, use_sandbox: bool, console: Console, selected: Sequence[str] = ()
) -> Iterator[Settings]:
    """The settings pointing at the cluster to test; starts (and stops) the sandbox if needed,
    with only the components the `selected` checks need."""
    if not use_sandbox and kubeconfig_configured(settings.connect):
        connect(settings.connect, settings.run_id)  # one clear line if it is unusable
        yield settings
        return
    from conformance import sandbox

    directory = sandbox.DEFAULT_DIR
    started_here = not sandbox.is_running(directory)
    if started_here:
        console.print(f"No kubeconfig given: starting the local sandbox in {directory}")
        without = sandbox.not_needed(selected)
        if without:
            console.print(f"  without {', '.join(without)}: none of the selected checks uses them")
        box = sandbox.up(directory, without, progress=lambda msg: console.print(f"  {msg}"))
    else:
        box = sandbox.attach(directory)
        console.print(f"Using the running local sandbox ({box.kubeconfig})")
    try:
        pointed = replace(
            settings,
            connect=replace(settings.connect, kubeconfig=str(box.kubeconfig), context=None),
        )
        connect(pointed.connect, settings.run_id)
        yield pointed
    finally:
        if started_here:
            console.print("Stopping the local sandbox")
            sandbox.down(directory)


def run(
    settings: Settings,
    *,
    use_sandbox: bool = False,
    workers: int = 1,
    verbose: bool = False,
    console: Console | None = None,
    plugins: Sequence[object] = (),
) -> int:
    console = console or stderr_console()
    settings = resolve_profile(settings, use_sandbox, console)
    selected = selected_check_ids(settings)  # unknown profile or check id: fail before anything
    output = settings.output or Path("reports") / settings.run_id
    settings = replace(settings, output=output)
    with target_cluster(settings, use_sandbox, console, selected) as target:
        console.print(
            f"kaic run {target.run_id}: profile {target.profile}, {len(selected)} check(s), "
            f"reports in {output}/"
        )
        if load_profile(target.profile).draft:
            console.print(f"  {target.profile} is a draft: its checklist is not published")
        display = ProgressDisplay(console, total=len(selected))
        code = pytest.main(pytest_args(target, workers, verbose), plugins=[display, *plugins])
    if code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE
    results = output / "results.json"
    if not results.exists():
        raise KaicError(f"the run ended (pytest exit {int(code)}) without writing {results}")
    finished = results_json.load(results)
    print_run(finished, stdout_console())
    console.print(f"Reports: {output}/results.json, junit.xml, summary.md, report.html")
    if code == pytest.ExitCode.INTERRUPTED:
        console.print("Interrupted: the checks that did not run are reported as errors.")
        return INTERRUPTED
    return finished.exit_code
