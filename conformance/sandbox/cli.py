"""`kaic sandbox build | up | down | status | break | mend`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from conformance import sandbox
from conformance.sandbox.faults import FAULTS
from conformance.sandbox.live_faults import break_faults, mend_faults

FAULT_HELP = "; ".join(f"{name}: {fault.summary}" for name, fault in FAULTS.items())


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sandbox_command", required=True,
                                parser_class=type(parser))  # fmt: skip
    sub.add_parser("build", help="build the components into the cache (reused when present)")
    up = sub.add_parser("up", help="start a sandbox and write <dir>/kubeconfig")
    breaks = sub.add_parser("break", help="apply faults to the running sandbox")
    mends = sub.add_parser("mend", help="remove faults from the running sandbox")
    for p in (breaks, mends):
        p.add_argument("faults", nargs="+", metavar="FAULT", choices=FAULTS, help=FAULT_HELP)
    for p in (up, sub.add_parser("down", help="stop the sandbox and remove its state"),
              sub.add_parser("status", help="show the sandbox's processes and nodes"),
              breaks, mends):  # fmt: skip
        p.add_argument("--dir", type=Path, default=sandbox.DEFAULT_DIR,
                       help=f"state directory (default: {sandbox.DEFAULT_DIR})")  # fmt: skip
    up.add_argument("--without", nargs="+", action="extend", default=[], metavar="COMPONENT",
                    choices=sandbox.COMPONENTS, help="leave components out")  # fmt: skip
    up.add_argument("--break", dest="breaks", nargs="+", action="extend", default=[],
                    metavar="FAULT", choices=FAULTS,
                    help=f"break something on purpose (repeatable): {FAULT_HELP}")  # fmt: skip


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
    if args.sandbox_command in ("break", "mend"):
        change = break_faults if args.sandbox_command == "break" else mend_faults
        changed = change(args.dir, args.faults, say)
        box = sandbox.attach(args.dir)
        what = "broken" if args.sandbox_command == "break" else "mended"
        print(f"{what.capitalize()}: {', '.join(changed)}" if changed else f"Nothing {what}")
        print(f"Broken now: {', '.join(box.breaks) or 'nothing'}")
        return 0
    print(sandbox.describe(args.dir))
    return 0 if sandbox.is_running(args.dir) else 1
