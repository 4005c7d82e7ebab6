"""`python -m conformance.agent COMMAND`: the probe agent's entry point."""

from __future__ import annotations

import argparse
import json
import sys

from conformance.agent import devices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaic-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("devices", help="print the accelerators this container sees, as JSON")
    args = parser.parse_args(argv)
    if args.command == "devices":
        json.dump(devices.report(), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
