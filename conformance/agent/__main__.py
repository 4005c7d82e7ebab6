"""`python -m conformance.agent COMMAND`: the probe agent's entry point.

Commands print one JSON document, then may keep running (`--hold`) so that the pod keeps its
devices or its place in a group; `--fail-after` makes the process exit non-zero after a while,
to show what the platform does when a container fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from conformance.agent import devices


def _lifetime(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--hold", type=float, default=0, metavar="SECONDS",
                     help="after printing, keep running this long")  # fmt: skip
    cmd.add_argument("--fail-after", type=float, default=0, metavar="SECONDS",
                     help="while holding, exit with code 1 after this long")  # fmt: skip
    cmd.add_argument("--fail-if", default="", metavar="VAR=VALUE",
                     help="only fail when this environment variable has this value")  # fmt: skip


def env_report(prefixes: list[str]) -> dict[str, Any]:
    return {
        "hostname": os.uname().nodename,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(tuple(prefixes))},
    }


def _should_fail(condition: str) -> bool:
    if not condition:
        return True
    name, _, value = condition.partition("=")
    return os.environ.get(name) == value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaic-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _lifetime(sub.add_parser("devices", help="the accelerators this container sees"))
    env = sub.add_parser("env", help="environment variables with the given prefixes")
    env.add_argument("prefixes", nargs="+", metavar="PREFIX")
    _lifetime(env)
    args = parser.parse_args(argv)
    report = devices.report() if args.command == "devices" else env_report(args.prefixes)
    json.dump(report, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if args.fail_after > 0 and _should_fail(args.fail_if):
        time.sleep(min(args.fail_after, args.hold) if args.hold else args.fail_after)
        print(f"failing on purpose after {args.fail_after:g}s", file=sys.stderr, flush=True)
        return 1
    if args.hold > 0:
        time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
