"""`python -m conformance.agent COMMAND`: the probe agent's entry point."""

from __future__ import annotations

import argparse
import json
import sys
import time

from conformance.agent import devices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaic-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("devices", help="print the accelerators this container sees, as JSON")
    cmd.add_argument(
        "--hold",
        type=float,
        default=0,
        metavar="SECONDS",
        help="then keep running (holding the devices) this long",
    )
    args = parser.parse_args(argv)
    if args.command == "devices":
        json.dump(devices.report(), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
        sys.stdout.flush()
        if args.hold > 0:
            time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
