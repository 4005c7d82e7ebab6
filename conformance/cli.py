"""The `kaic` command line: argument parsing only; the work happens in runner and friends."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kaic",
        description="Kubernetes AI conformance: deploys probe workloads and asserts what the "
        "cluster actually did.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a profile's checks against a cluster")
    _cluster_options(run)
    run.add_argument("--sandbox", action="store_true", help="run against the local sandbox")
    run.add_argument("--profile", default=DEFAULT_PROFILE, help=f"(default: {DEFAULT_PROFILE})")
    run.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="ID",
        help="run only these check ids (globs allowed; repeatable)",
    )
    run.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="ID",
        help="skip these check ids (globs allowed; repeatable)",
    )
    run.add_argument("--accelerator", choices=ACCELERATORS, default="auto")
    run.add_argument("--allocation-mode", choices=ALLOCATION_MODES, default="auto")
    run.add_argument(
        "--timeout-scale",
        type=_positive,
        default=1.0,
        help="multiply every wait's timeout (slow clusters: 2, 3, ...)",
    )
    run.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="keep the namespaces of failed checks for inspection",
    )
    run.add_argument("--output", type=Path, help="report directory (default: reports/<run-id>/)")
    run.add_argument("--run-id", help="label value marking this run's objects")
    run.add_argument(
        "-n",
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="run checks in N processes (pytest-xdist)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output too")

    lst = sub.add_parser("list", help="requirements of a profile and the checks verifying them")
    lst.add_argument("--profile", default=DEFAULT_PROFILE, help=f"(default: {DEFAULT_PROFILE})")
    lst.add_argument("--checks", action="store_true", help="list every check instead")

    report = sub.add_parser("report", help="re-render junit.xml and summary.md from results.json")
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

    sandbox = sub.add_parser("sandbox", help="the local sandbox cluster (build, up, down, status)")
    try:
        from conformance.sandbox import cli as sandbox_cli
    except ImportError:
        pass
    else:
        sandbox_cli.add_subcommands(sandbox)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from conformance import runner

    if args.parallel < 1:
        raise KaicError("--parallel must be at least 1")
    run_id = validate_run_id(args.run_id) if args.run_id else new_run_id()
    settings = settings_from(args, run_id)
    return runner.run(
        settings, use_sandbox=args.sandbox, workers=args.parallel, verbose=args.verbose
    )


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
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.report import junit, results_json, summary
    from conformance.report.render import print_run, stdout_console

    run = results_json.load(args.results)
    out: Path = args.output or args.results.parent
    out.mkdir(parents=True, exist_ok=True)
    written = [junit.write(run, out / "junit.xml"), summary.write(run, out / "summary.md")]
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
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0)
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


if __name__ == "__main__":
    sys.exit(main())
