"""`kaic sandbox build | up | down | status`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from conformance import sandbox


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sandbox_command", required=True,
                                parser_class=type(parser))  # fmt: skip
    sub.add_parser("build", help="build the components into the cache (reused when present)")
    up = sub.add_parser("up", help="start a sandbox and write <dir>/kubeconfig")
    for p in (up, sub.add_parser("down", help="stop the sandbox and remove its state"),
              sub.add_parser("status", help="show the sandbox's processes and nodes")):  # fmt: skip
        p.add_argument("--dir", type=Path, default=sandbox.DEFAULT_DIR,
                       help=f"state directory (default: {sandbox.DEFAULT_DIR})")  # fmt: skip
    up.add_argument("--without", nargs="+", action="extend", default=[], metavar="COMPONENT",
                    choices=sandbox.COMPONENTS, help="leave components out")  # fmt: skip
    up.add_argument("--break", dest="breaks", nargs="+", action="extend", default=[],
                    metavar="FAULT", choices=sandbox.FAULTS,
                    help="break something on purpose (repeatable)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)

    def say(message: str) -> None:
        console.print(f"  {message}", highlight=False)

    if args.sandbox_command == "build":
        sandbox.build(say)
        return 0
    if args.sandbox_command == "up":
        box = sandbox.up(args.dir, args.without, args.breaks, progress=say)
        print(f"Sandbox running. Kubeconfig: {box.kubeconfig}")
        kinds = "nodes,deviceclasses,resourceslices,clusterqueues"
        print(f"  kubectl --kubeconfig {box.kubeconfig} get {kinds}")
        print(f"  kaic run --kubeconfig {box.kubeconfig}")
        print(f"Stop it with: kaic sandbox down --dir {args.dir}")
        return 0
    if args.sandbox_command == "down":
        stopped = sandbox.down(args.dir)
        print(f"Stopped {', '.join(stopped)}" if stopped else f"No sandbox in {args.dir}")
        return 0
    print(sandbox.describe(args.dir))
    return 0 if sandbox.is_running(args.dir) else 1
