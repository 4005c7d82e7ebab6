"""The `kaic` command line: argument parsing only; the work happens in runner and friends."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from conformance.checks.registry import discover
from conformance.cluster import ConnectOptions, connect
from conformance.cluster.cleanup import sweep
from conformance.errors import KaicError
from conformance.profiles import available_profiles, load_profile, validate_file
from conformance.report.render import stdout_console
from conformance.results import EXIT_USAGE
from conformance.selection import new_run_id, validate_run_id
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
    gateway_ref,
    pd_images,
    settings_from,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: its current-context)")
    parser.add_argument(
        "--in-cluster", action="store_true", help="use the pod's service account credentials"
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `kaic run` and `kaic entrypoint`."""
    _cluster_options(parser)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=PROFILE_HELP)
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="ID",
        help="run only these check ids (globs allowed; repeatable)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="ID",
        help="skip these check ids (globs allowed; repeatable)",
    )
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="auto")
    parser.add_argument("--allocation-mode", choices=ALLOCATION_MODES, default="auto")
    parser.add_argument(
        "--operator", action="append", default=[], choices=OPERATORS, metavar="NAME",
        help=f"operator to verify for robust_controller ({', '.join(OPERATORS)}; repeatable; "
        "default: every one installed)",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-url", metavar="URL",
        help="the platform's Prometheus (default: found among the cluster's Services and "
        "queried through the API server's proxy)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-endpoint", metavar="URL",
        help="the accelerator metrics exporter's /metrics URL (default: the dcgm-exporter or AMD "
        "device-metrics-exporter pods, through the API server's proxy)",
    )  # fmt: skip
    parser.add_argument(
        "--autoscaler-node-group", metavar="NAME",
        help="the accelerator node group cluster_autoscaling grows, or a Karpenter NodePool "
        "(default: discovered from node labels and NodePools)",
    )  # fmt: skip
    parser.add_argument(
        "--autoscaler-timeout", type=_positive, default=900.0, metavar="SECONDS",
        help="how long a node group may take to grow, and again to shrink (default: 900)",
    )  # fmt: skip
    parser.add_argument(
        "--observe-window", type=_positive, default=OBSERVE_WINDOW_S, metavar="SECONDS",
        help="how long checks that must see something not happen (a gang partly started, a "
        f"workload admitted early) watch for it (default: {OBSERVE_WINDOW_S:.0f})",
    )  # fmt: skip
    parser.add_argument(
        "--gateway", type=gateway_ref, metavar="NAMESPACE/NAME",
        help="test this Gateway (its listeners must admit routes from other namespaces) "
        "instead of one the suite creates",
    )  # fmt: skip
    parser.add_argument(
        "--gateway-class", metavar="NAME",
        help="the GatewayClass of the suite's own Gateways (default: the first Accepted one)",
    )  # fmt: skip
    parser.add_argument(
        "--model-header", metavar="HEADER", default=MODEL_HEADER,
        help=f"the header the platform routes on the model name by (default: {MODEL_HEADER}, "
        "which body-based routing fills from the request)",
    )  # fmt: skip
    parser.add_argument(
        "--epp-image", metavar="IMAGE", default=EPP_IMAGE,
        help=f"the endpoint picker the InferencePool checks deploy (default: {EPP_IMAGE})",
    )  # fmt: skip
    parser.add_argument(
        "--pd-images", type=pd_images, metavar="ROLE=IMAGE,...", default=PdImages(),
        help="llm-d images the disaggregated-inference check deploys, roles scheduler, sidecar, "
        f"server (default: {PdImages().flag()})",
    )  # fmt: skip
    parser.add_argument(
        "--timeout-scale",
        type=_positive,
        default=1.0,
        help="multiply every wait's timeout (slow clusters: 2, 3, ...)",
    )
    parser.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="keep the namespaces of failed checks for inspection",
    )
    parser.add_argument("--output", type=Path, help="report directory (default: reports/<run-id>/)")
    parser.add_argument("--run-id", help="label value marking this run's objects")
    parser.add_argument(
        "-n",
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="run checks in N processes (pytest-xdist)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output too")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kaic",
        description="Kubernetes AI conformance: deploys probe workloads and asserts what the "
        "cluster actually did.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a profile's checks against a cluster")
    _run_options(run)
    run.add_argument("--sandbox", action="store_true", help="run against the local sandbox")

    lst = sub.add_parser("list", help="requirements of a profile and the checks verifying them")
    lst.add_argument("--profile", default=DEFAULT_PROFILE, help=PROFILE_HELP)
    lst.add_argument("--checks", action="store_true", help="list every check instead")

    report = sub.add_parser(
        "report", help="re-render junit.xml, summary.md and report.html from results.json"
    )
    report.add_argument("results", type=Path, metavar="RESULTS.json")
    report.add_argument("--output", type=Path, help="where to write (default: beside RESULTS.json)")

    profiles = sub.add_parser("profiles", help="list or validate profiles")
    psub = profiles.add_subparsers(dest="profiles_command", required=True, parser_class=_Parser)
    psub.add_parser("list", help="the profiles kaic ships")
    validate = psub.add_parser("validate", help="validate profile files")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")

    sub.add_parser("version", help="print kaic's version")

    cleanup = sub.add_parser("cleanup", help="delete what kaic runs left in a cluster")
    _cluster_options(cleanup)
    cleanup.add_argument("--run-id", help="only this run's objects (default: every kaic run)")

    _incluster_parsers(sub)
    _submission_parser(sub)

    sandbox = sub.add_parser("sandbox", help="the local sandbox cluster (build, up, down, status)")
    try:
        from conformance.sandbox import cli as sandbox_cli
    except ImportError:
        pass
    else:
        sandbox_cli.add_subcommands(sandbox)
    return parser


def _incluster_parsers(sub: Any) -> None:
    from conformance.probes import PROBE_IMAGE

    plugin = sub.add_parser("plugin", help="print a Sonobuoy plugin definition running kaic")
    plugin.add_argument("--profile", default=DEFAULT_PROFILE, help=PROFILE_HELP)
    plugin.add_argument("--image", default=PROBE_IMAGE, help=f"kaic image (default: {PROBE_IMAGE})")
    plugin.add_argument("--result-format", choices=("junit", "manual"), default="junit")
    manifests = sub.add_parser(
        "manifests", help="print a standalone Job, ServiceAccount and least-privilege RBAC"
    )
    manifests.add_argument("--profile", default=DEFAULT_PROFILE, help=PROFILE_HELP)
    manifests.add_argument("--image", default=PROBE_IMAGE, help=f"(default: {PROBE_IMAGE})")
    manifests.add_argument("--namespace", default="kaic", help="where the Job runs (default: kaic)")
    manifests.add_argument(
        "--linger", type=int, default=600, metavar="S",
        help="keep the finished pod S seconds to fetch the results (default: 600)",
    )  # fmt: skip
    manifests.add_argument(
        "--rbac-only", action="store_true", help="only the ClusterRole (for your own binding)"
    )
    entry = sub.add_parser(
        "entrypoint",
        help="the container's command: run in-cluster, write Sonobuoy results and `done`",
        description="Runs the suite with the pod's service account (or --kubeconfig), POSTs "
        "progress to localhost:$SONOBUOY_PROGRESS_PORT, and writes the results tarball and the "
        "done file into $SONOBUOY_RESULTS_DIR (default /tmp/sonobuoy/results).",
    )
    _run_options(entry)
    entry.add_argument("--result-format", choices=("junit", "manual"), default="junit")
    entry.add_argument(
        "--linger", type=float, default=0, metavar="S",
        help="after publishing, wait S seconds before exiting (to kubectl cp the results)",
    )  # fmt: skip


def _submission_parser(sub: Any) -> None:
    p = sub.add_parser(
        "submission",
        help="write a CNCF AI conformance submission (PRODUCT.yaml, evidence) from results.json",
    )
    p.add_argument("results", type=Path, metavar="RESULTS.json")
    p.add_argument("--platform-name", required=True)
    p.add_argument("--vendor", required=True)
    p.add_argument("--version", help="checklist version, e.g. 1.35 (default: the run's profile)")
    p.add_argument("--platform-version")
    p.add_argument("--website-url")
    p.add_argument("--repo-url")
    p.add_argument("--documentation-url")
    p.add_argument("--product-logo-url")
    p.add_argument("--description")
    p.add_argument("--contact-email")
    p.add_argument("--k8s-conformance-url")
    p.add_argument(
        "--output", type=Path, help="directory (default: submissions/v<version>/<platform-name>/)"
    )
    p.add_argument(
        "--draft",
        action="store_true",
        help="write it even if metadata is missing or a MUST item is not Implemented",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from conformance import runner

    if args.parallel < 1:
        raise KaicError("--parallel must be at least 1")
    run_id = validate_run_id(args.run_id) if args.run_id else new_run_id()
    settings = settings_from(args, run_id)
    return runner.run(
        settings, use_sandbox=args.sandbox, workers=args.parallel, verbose=args.verbose
    )


def cmd_plugin(args: argparse.Namespace) -> int:
    from conformance.incluster import manifests

    load_profile(args.profile, known_checks=set(discover()))
    plugin = manifests.sonobuoy_plugin(args.profile, args.image, args.result_format)
    print(manifests.dump_all([plugin]), end="")
    return 0


def cmd_manifests(args: argparse.Namespace) -> int:
    from conformance.incluster import manifests, rbac

    load_profile(args.profile, known_checks=set(discover()))
    if args.rbac_only:
        docs = [rbac.cluster_role(manifests.NAME, dict(manifests.LABELS))]
    else:
        docs = manifests.job_manifests(args.profile, args.image, args.namespace, args.linger)
    print(manifests.dump_all(docs), end="")
    return 0


def cmd_entrypoint(args: argparse.Namespace) -> int:
    import os

    from conformance.incluster import entrypoint, hydrophone

    if args.parallel < 1:
        raise KaicError("--parallel must be at least 1")
    if not args.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        args.in_cluster = True
    run_id = validate_run_id(args.run_id) if args.run_id else new_run_id()
    settings = settings_from(args, run_id)
    hydrophone_env = hydrophone.HydrophoneEnv.from_environ()
    if hydrophone_env:
        return hydrophone.run(settings, hydrophone_env, workers=args.parallel)
    return entrypoint.run(
        settings, result_format=args.result_format, linger_s=args.linger, workers=args.parallel
    )


def cmd_submission(args: argparse.Namespace) -> int:
    from conformance.submission import bundle
    from conformance.submission.product import METADATA_FLAGS

    metadata = {key: getattr(args, flag) for flag, key in METADATA_FLAGS.items()}
    command = ["kaic", *sys.argv[1:]] if sys.argv[1:2] == ["submission"] else ["kaic", "submission"]
    try:
        done = bundle.write_submission(
            args.results, args.version, {k: v for k, v in metadata.items() if v}, args.output,
            command, draft=args.draft,
        )  # fmt: skip
    except bundle.SubmissionRefused as refused:
        for reason in refused.reasons:
            print(f"kaic submission: refused: {reason}", file=sys.stderr)
        print("kaic submission: nothing written (--draft writes it anyway)", file=sys.stderr)
        return 1
    print(f"Wrote {done.directory}/ ({len(done.written)} files)", file=sys.stderr)
    for line in done.product.undecided:
        print(f"  decide by hand: {line}", file=sys.stderr)
    for line in done.product.caveats:
        print(f"  note: {line}", file=sys.stderr)
    for line in done.validator_findings:
        print(f"  CNCF validator (offline rules): {line}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    console = stdout_console()
    catalog = discover()
    if args.checks:
        table = Table(title="kaic checks")
        for column in ("Check", "Requirements", "What it verifies"):
            table.add_column(column)
        for info in sorted(catalog.values(), key=lambda i: i.id):
            table.add_row(info.id, ", ".join(info.requirements), info.summary)
        console.print(table)
        return 0
    profile = load_profile(args.profile, known_checks=set(catalog))
    table = Table(title=f"{profile.title} ({profile.name})")
    for column in ("Requirement", "Category", "Level", "Checks", "Implemented"):
        table.add_column(column, no_wrap=column != "Category")
    conditions = []
    for req in profile.requirements:
        level: str = req.level
        if req.condition:
            conditions.append(f"* {req.id}: only if {req.condition}")
            level += "*"
        implemented = "[green]yes[/]" if req.checks else "[dim]not-implemented[/]"
        table.add_row(req.id, req.category, level, "\n".join(req.checks) or "-", implemented)
    console.print(table)
    for line in conditions:
        console.print(line, highlight=False)
    na = [(req.id, cid, text) for req in profile.requirements
          for cid, text in req.not_applicable_when]  # fmt: skip
    if na:
        console.print("\nNot applicable only when (any other skip is reported as an error):")
        for rid, cid, text in na:
            console.print(f"  {rid} ({cid}): {text}", highlight=False, markup=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.report import html, junit, results_json, summary
    from conformance.report.render import print_run, stdout_console

    run = results_json.load(args.results)
    out: Path = args.output or args.results.parent
    out.mkdir(parents=True, exist_ok=True)
    written = [
        junit.write(run, out / "junit.xml"),
        summary.write(run, out / "summary.md"),
        html.write(run, out / "report.html"),
    ]
    if out.resolve() != args.results.parent.resolve():
        written.insert(0, results_json.write(run, out / "results.json"))
    print_run(run, stdout_console())
    Console(stderr=True).print("Wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    if args.profiles_command == "list":
        for name in available_profiles():
            profile = load_profile(name, known_checks=set(discover()))
            print(f"{name:16} {profile.title}")
        return 0
    known = set(discover())
    failed = 0
    for path in args.files:
        try:
            print(validate_file(path, known))
        except KaicError as exc:
            print(f"kaic: error: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_USAGE if failed else 0


def cmd_version(args: argparse.Namespace) -> int:
    from conformance.finish import kaic_version

    print(f"kaic {kaic_version()}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.run_id:
        validate_run_id(args.run_id)
    options = ConnectOptions(args.kubeconfig, args.context, args.in_cluster)
    cluster = connect(options, run_id=args.run_id or "cleanup")
    result = sweep(
        cluster,
        args.run_id,
        all_namespaces=True,
        wait_s=300,
        progress=lambda msg: console.print(f"  {msg}"),
    )
    what = f"run {args.run_id}" if args.run_id else "every kaic run"
    console.print(f"Deleted {len(result.deleted)} object(s) of {what} from {cluster.server}")
    for problem in result.problems:
        console.print(f"[red]could not delete[/] {problem}")
    return 1 if result.problems else 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from conformance.sandbox import cli as sandbox_cli

    return sandbox_cli.run(args)


COMMANDS = {
    "run": cmd_run,
    "list": cmd_list,
    "report": cmd_report,
    "profiles": cmd_profiles,
    "version": cmd_version,
    "cleanup": cmd_cleanup,
    "sandbox": cmd_sandbox,
    "plugin": cmd_plugin,
    "manifests": cmd_manifests,
    "entrypoint": cmd_entrypoint,
    "submission": cmd_submission,
}

# Commands that create objects or start processes: SIGTERM (pod deletion, CI cancel) and SIGHUP
# (the terminal went away) clean up as Ctrl-C does.
TERMINATED = {"run", "entrypoint", "sandbox"}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    """Stop like Ctrl-C, once: a second SIGTERM or SIGHUP must not cut the cleanup short. After
    a hang-up, output to the gone terminal would fail (EIO), so it goes nowhere instead."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGHUP:
        _detach_from_terminal()
    raise KeyboardInterrupt


def _detach_from_terminal() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                os.dup2(devnull, fd)
    os.close(devnull)


def _with_hydrophone_args(argv: list[str]) -> list[str]:
    """Under Hydrophone, E2E_EXTRA_ARGS and E2E_EXTRA_GINKGO_ARGS are entrypoint options."""
    from conformance.incluster.hydrophone import HydrophoneEnv

    env = HydrophoneEnv.from_environ() if argv[:1] == ["entrypoint"] else None
    return [*argv, *env.argv()] if env else argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = _with_hydrophone_args(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        if argv[:1] == ["entrypoint"] and exc.code:
            _hydrophone_usage_error()
        return int(exc.code or 0)
    if args.command in TERMINATED:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _interrupt)
    try:
        return COMMANDS[args.command](args)
    except KaicError as exc:
        print(f"kaic: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kaic: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _hydrophone_usage_error() -> None:
    from conformance.incluster import hydrophone

    env = hydrophone.HydrophoneEnv.from_environ()
    if env:  # Hydrophone needs its two files whatever happened, or it leaves its pod behind
        hydrophone.usage_error(env, "kaic entrypoint: bad options (E2E_EXTRA_ARGS?); see the log")


if __name__ == "__main__":
    sys.exit(main())
