"""The options of one run, as parsed from `kaic run` or `pytest` flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from conformance.cluster.connect import ConnectOptions

Accelerator = Literal["auto", "nvidia", "amd", "example"]
AllocationMode = Literal["auto", "dra", "device-plugin"]
ACCELERATORS: tuple[Accelerator, ...] = ("auto", "nvidia", "amd", "example")
ALLOCATION_MODES: tuple[AllocationMode, ...] = ("auto", "dra", "device-plugin")
DEFAULT_PROFILE = "cncf-ai-v1.35"
# Operators kaic knows how to verify (conformance/checks/_operators.py); none named = detect.
OPERATORS = ("lws", "kueue", "kuberay", "kubeflow-trainer")


@dataclass(frozen=True)
class Settings:
    run_id: str
    profile: str = DEFAULT_PROFILE
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    checks: tuple[str, ...] = ()
    skips: tuple[str, ...] = ()
    accelerator: Accelerator = "auto"
    allocation_mode: AllocationMode = "auto"
    operators: tuple[str, ...] = ()
    prometheus_url: str = ""
    metrics_endpoint: str = ""
    autoscaler_node_group: str = ""
    autoscaler_timeout_s: float = 900.0
    keep_on_failure: bool = False
    output: Path | None = None


def settings_from(options: Any, run_id: str) -> Settings:
    """Settings from parsed options named like the flags (`kaic run`'s or the plugin's)."""
    return Settings(
        run_id=run_id,
        profile=options.profile,
        connect=ConnectOptions(
            kubeconfig=options.kubeconfig,
            context=options.context,
            in_cluster=options.in_cluster,
            timeout_scale=options.timeout_scale,
        ),
        checks=tuple(options.check),
        skips=tuple(options.skip),
        accelerator=options.accelerator,
        allocation_mode=options.allocation_mode,
        operators=tuple(dict.fromkeys(getattr(options, "operator", None) or ())),
        prometheus_url=getattr(options, "prometheus_url", None) or "",
        metrics_endpoint=getattr(options, "metrics_endpoint", None) or "",
        autoscaler_node_group=getattr(options, "autoscaler_node_group", None) or "",
        autoscaler_timeout_s=float(getattr(options, "autoscaler_timeout", None) or 900.0),
        keep_on_failure=options.keep_on_failure,
        output=Path(options.output) if options.output else None,
    )
