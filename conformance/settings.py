"""The options of one run, as parsed from `kaic run` or `pytest` flags."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from conformance.cluster.connect import ConnectOptions

Accelerator = Literal["auto", "nvidia", "amd", "example"]
AllocationMode = Literal["auto", "dra", "device-plugin"]
ACCELERATORS: tuple[Accelerator, ...] = ("auto", "nvidia", "amd", "example")
ALLOCATION_MODES: tuple[AllocationMode, ...] = ("auto", "dra", "device-plugin")
# The newest published CNCF checklist profile the cluster's Kubernetes version meets
# (runner.resolve_profile); without a cluster (kaic list), the newest one.
DEFAULT_PROFILE = "auto"
PROFILE_HELP = (
    "profile name or YAML file (default: auto, the newest CNCF checklist profile that the "
    "cluster's Kubernetes version meets)"
)
# Operators kaic knows how to verify (conformance/checks/_operators.py); none named = detect.
OPERATORS = ("lws", "kueue", "kuberay", "kubeflow-trainer")
# The header Gateway API Inference Extension's body-based routing fills with the request's model.
MODEL_HEADER = "X-Gateway-Model-Name"
EPP_IMAGE = "registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0"
OBSERVE_WINDOW_S = 15.0


@dataclass(frozen=True)
class PdImages:
    """The llm-d images the disaggregated-inference check deploys (`--pd-images`)."""

    scheduler: str = "ghcr.io/llm-d/llm-d-inference-scheduler:v0.7.1"
    sidecar: str = "ghcr.io/llm-d/llm-d-routing-sidecar:v0.7.1"
    server: str = "ghcr.io/llm-d/llm-d-inference-sim:v0.10.2"

    def flag(self) -> str:
        return ",".join(f"{role}={image}" for role, image in vars(self).items())


def pd_images(text: str) -> PdImages:
    """`--pd-images`'s value: `ROLE=IMAGE,...` for any of scheduler, sidecar, server."""
    given: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        role, _, image = item.partition("=")
        if role not in vars(PdImages()) or not image:
            raise argparse.ArgumentTypeError(
                f"expected ROLE=IMAGE,... with ROLE one of scheduler, sidecar, server; got {item!r}"
            )
        given[role] = image
    return PdImages(**given)


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
    # How long a check that must see something NOT happen (a gang partly started, a workload
    # admitted that must wait) watches for it; a watch ends the window early when it does.
    observe_window_s: float = OBSERVE_WINDOW_S
    gateway: str = ""  # NAMESPACE/NAME of a Gateway to test instead of the suite's own
    gateway_class: str = ""
    model_header: str = MODEL_HEADER
    epp_image: str = EPP_IMAGE
    pd_images: PdImages = field(default_factory=PdImages)
    keep_on_failure: bool = False
    output: Path | None = None


_DNS_LABEL = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"


def gateway_ref(text: str) -> str:
    """`--gateway`'s value: NAMESPACE/NAME."""
    if not re.fullmatch(f"{_DNS_LABEL}/{_DNS_LABEL}", text):
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME of a Gateway, got {text!r}")
    return text


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
        observe_window_s=float(getattr(options, "observe_window", None) or OBSERVE_WINDOW_S),
        gateway=getattr(options, "gateway", None) or "",
        gateway_class=getattr(options, "gateway_class", None) or "",
        model_header=getattr(options, "model_header", None) or MODEL_HEADER,
        epp_image=getattr(options, "epp_image", None) or EPP_IMAGE,
        pd_images=getattr(options, "pd_images", None) or PdImages(),
        keep_on_failure=options.keep_on_failure,
        output=Path(options.output) if options.output else None,
    )
