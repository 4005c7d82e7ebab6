"""`python -m conformance.agent COMMAND`: the probe agent's entry point.

`serve` runs a model server (see `serve.py`). The other commands print one JSON document, then
may keep running (`--hold`) so that the pod keeps its devices or its place in a group;
`--fail-after` makes the process exit non-zero after a while, to show what the platform does when
a container fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from conformance.agent import devices, load, serve, traffic


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


def _exit_on_sigterm() -> None:
    """As a container's first process the agent gets no default action for SIGTERM (the kernel
    ignores it for PID 1), so a pod being deleted would wait out its grace period (30 s)."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))


def main(argv: list[str] | None = None) -> int:
    _exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="kaic-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _lifetime(sub.add_parser("devices", help="the accelerators this container sees"))
    env = sub.add_parser("env", help="environment variables with the given prefixes")
    env.add_argument("prefixes", nargs="+", metavar="PREFIX")
    _lifetime(env)
    serving = sub.add_parser("serve", help="an OpenAI-style model server with vLLM metrics")
    serving.add_argument("--port", type=int, default=8000)
    serving.add_argument(
        "--host",
        default=os.environ.get("POD_IP") or "0.0.0.0",
        help="address to listen on (default: $POD_IP, else every address)",
    )
    serving.add_argument("--model", default="kaic-probe", help="the model name it serves")
    serving.add_argument("--role", choices=["", "prefill", "decode"], default="",
                         help="its role in disaggregated serving")  # fmt: skip
    serving.add_argument("--queue-depth", type=int, default=0,
                         help="report this many waiting requests")  # fmt: skip
    serving.add_argument("--kv-cache-usage", type=float, default=0.0,
                         help="report this KV-cache usage (0..1)")  # fmt: skip
    serving.add_argument("--latency-ms", type=float, default=0.0,
                         help="take this long per request")  # fmt: skip
    load_cmd = sub.add_parser("burn", help="keep this container's accelerators busy")
    load_cmd.add_argument("--seconds", type=float, default=60)
    send = sub.add_parser("traffic", help="send model requests to a URL, count who answered")
    send.add_argument("--url", required=True, help="e.g. http://GATEWAY:8080/v1/completions")
    send.add_argument("--count", type=int, default=100)
    send.add_argument("--model", action="append", default=[], metavar="NAME",
                      help="model to ask for (repeat: requests take turns)")  # fmt: skip
    send.add_argument("--model-header", default="", metavar="HEADER",
                      help="also name the model in this header")  # fmt: skip
    send.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    send.add_argument("--prompt-prefix", default="", help="text every prompt starts with")
    send.add_argument("--warmup", type=float, default=0, metavar="SECONDS",
                      help="first wait up to this long for one success")  # fmt: skip
    send.add_argument("--warmup-until", choices=("success", "answer"), default="success",
                      help="what ends the wait: a 200, or any HTTP answer")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "traffic":
        headers = dict(h.split(":", 1) for h in args.header if ":" in h)
        plan = traffic.Plan(args.url, args.count, args.model or ["kaic-probe"],
                            args.model_header, {k.strip(): v.strip() for k, v in headers.items()},
                            args.prompt_prefix, args.warmup, args.warmup_until)  # fmt: skip
        json.dump(traffic.run(plan), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    if args.command == "burn":
        return load.burn(args.seconds)
    if args.command == "serve":
        control = {"queue_depth": args.queue_depth, "kv_cache_usage": args.kv_cache_usage,
                   "latency_ms": args.latency_ms}  # fmt: skip
        return serve.serve(args.model, args.host, args.port, args.role, control)
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
