"""The sandbox's pure parts, without starting one: argument errors, the kubelet-like helpers of
the probe runtime, and the upstream webhook selectors."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from conformance import sandbox as sbx
from conformance.errors import KaicError
from conformance.probes import is_probe_image
from conformance.sandbox import controllers, faults, lifecycle, processes, topology
from conformance.sandbox.probe_runtime import container_port, expand, runs, sandbox_component


@pytest.mark.parametrize(
    ("without", "breaks", "message"),
    [
        (["gpu-operator"], [], "--without gpu-operator: unknown component (known: kueue, lws"),
        ([], ["everything"], "--break everything: unknown fault (known: device-plugin-no-devices"),
    ],
)
def test_unknown_component_or_fault_is_one_clear_error(
    tmp_path: Path, without: list[str], breaks: list[str], message: str
) -> None:
    with pytest.raises(KaicError) as caught:
        sbx.up(tmp_path / "never", without, breaks)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "never").exists(), "nothing is started for a bad argument"


def test_var_expansion_is_the_kubelets() -> None:
    env = {"MODEL": "tiny", "PORT": "8000"}
    assert expand(["serve", "--model=$(MODEL)", "$(PORT)", "$$(PORT)", "$(UNSET)"], env) == [
        "serve", "--model=tiny", "8000", "$(PORT)", "$(UNSET)",
    ]  # fmt: skip


def test_probe_ports_by_number_or_name() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert container_port(container, 9000) == 9000
    assert container_port(container, "9000") == 9000
    assert container_port(container, "http") == 8080
    assert container_port(container, "metrics") is None


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/kaic-dev/kaic-probe:0.1.0",
        "kaic-probe",
        "localhost:5000/dev/kaic-probe:dev",
        "registry.example/x/kaic-probe@sha256:" + "a" * 64,
        "registry.k8s.io/pause:3.10",
        "ghcr.io/kaic-dev/kaic-probe-extra:1",
        "kaic-probe/other:1",
        "kaic-sandbox/prometheus:3.16.0",
        "localhost:5000/kaic-sandbox/gpu-exporter",
        "kaic-sandbox/prometheus/x:1",
        "my-kaic-sandbox/prometheus:1",
        "kaic-sandbox/Bad_Name:1",
    ],
)
def test_kwok_stage_pattern_agrees_with_the_runtime(image: str) -> None:
    """KWOK (CEL `matches`, RE2) and the probe runtime must agree on what a probe image is."""
    assert bool(re.search(lifecycle.PROBE_IMAGE_PATTERN, image)) == runs(image)
    assert is_probe_image(image) == (
        image.split("@")[0].rsplit("/", 1)[-1].split(":")[0].endswith(sbx.PROBE_IMAGE_SUFFIX)
    )


@pytest.mark.parametrize(
    ("image", "component"),
    [
        ("kaic-sandbox/prometheus:3.16.0", "prometheus"),
        ("localhost:5000/kaic-sandbox/gpu-exporter", "gpu-exporter"),
        ("kaic-sandbox/prometheus/x:1", None),
        ("my-kaic-sandbox/prometheus:1", None),
        ("kaic-sandbox/Bad_Name:1", None),
        ("ghcr.io/kaic-dev/kaic-probe:0.1.0", None),
    ],
)
def test_sandbox_component_images(image: str, component: str | None) -> None:
    assert sandbox_component(image) == component


def test_node_faults_label_only_the_nodes_they_concern() -> None:
    topo, nodes = topology.load()
    breaks = ["device-plugin-no-devices", "gpu-visible-without-request"]
    labels = {
        spec.name: {
            k for k in faults.node_objects(spec, topo, breaks)[0]["metadata"]["labels"]
            if k.startswith("faults.kaic.dev/")
        }
        for spec in nodes
    }  # fmt: skip
    assert labels["cpu-0"] == set()
    assert labels["gpu-dp-0"] == {
        "faults.kaic.dev/device-plugin-no-devices",
        "faults.kaic.dev/gpu-visible-without-request",
    }
    assert labels["gpu-dra-0"] == {"faults.kaic.dev/gpu-visible-without-request"}


def test_driver_faults_change_what_hosts_run_and_advertise() -> None:
    topo, nodes = topology.load()
    host = topology.HOST_DRIVER_ANNOTATION

    def drivers(breaks: list[str]) -> dict[str, tuple[str, str]]:
        out = {}
        for spec in faults.node_specs(nodes, breaks):
            node = faults.node_objects(spec, topo, breaks)[0]
            labels, notes = node["metadata"]["labels"], node["metadata"]["annotations"]
            if spec.kind == "dra":
                slice_ = topology.resource_slice(spec, topo)
                advertised = slice_["spec"]["devices"][0]["attributes"]["driverVersion"]["version"]
            else:
                advertised = labels.get("nvidia.com/cuda.driver-version.full", "")
            out[spec.name] = (advertised, notes.get(host, ""))
        return out

    healthy = drivers([])
    assert healthy["cpu-0"] == ("", "")
    assert {v for k, v in healthy.items() if k != "cpu-0"} == {("570.124.6", "570.124.6")}
    mismatch = drivers(["driver-version-mismatch"])
    assert mismatch["gpu-dp-0"] == mismatch["gpu-dra-1"] == ("570.124.6", "535.183.1")
    skew = drivers(["driver-version-skew"])
    assert skew["gpu-dra-1"] == skew["gpu-ts-0"] == ("535.183.1", "535.183.1")
    assert skew["gpu-dra-0"] == skew["gpu-dp-1"] == ("570.124.6", "570.124.6")


def test_time_slicing_fault_keeps_the_labels_but_not_the_replicas() -> None:
    topo, nodes = topology.load()
    shared = next(n for n in nodes if n.replicas > 1)
    node, status = faults.node_objects(shared, topo, [])
    assert status["status"]["allocatable"]["nvidia.com/gpu"] == str(shared.gpus * shared.replicas)
    node, status = faults.node_objects(shared, topo, ["time-slicing-no-replicas"])
    assert node["metadata"]["labels"]["nvidia.com/gpu.replicas"] == str(shared.replicas)
    assert status["status"]["allocatable"]["nvidia.com/gpu"] == str(shared.gpus)


@pytest.mark.sandbox
def test_webhooks_keep_the_upstream_selectors() -> None:
    """Needs the built cache (the manifests come from the Go modules)."""
    data = sbx.build() / "data"
    lws = controllers._webhooks(data / "lws/config/webhook/manifests.yaml", "lws-",
                                "https://127.0.0.1:1", b"ca", controllers.LWS_GROUPS)  # fmt: skip
    pod_hooks = [h for c in lws for h in c["webhooks"] if h["name"] in ("mpod.kb.io", "vpod.kb.io")]
    assert len(pod_hooks) == 2
    for hook in pod_hooks:
        assert hook["objectSelector"]["matchExpressions"][0]["key"] == (
            "leaderworkerset.sigs.k8s.io/name"
        )
        assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:1/")


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("starting\npanic: boom\ngoroutine 1\n\tproc.go:290\n", "panic: boom"),
        ("a\nlast words\n", "last words"),
        (
            '{"msg":"problem running manager","error":"too many open files"}\n\tproc.go:290\n',
            "fs.inotify.max_user_instances",
        ),
    ],
)
def test_a_process_that_exits_is_explained_by_its_log(
    tmp_path: Path, log: str, expected: str
) -> None:
    path = tmp_path / "c.log"
    path.write_text(log)
    with pytest.raises(KaicError, match=re.escape(expected)):
        processes.wait_until("c", lambda: False, pid=2**22 + 1, log=path, timeout_s=5)


def test_a_changed_pin_rebuilds_only_its_component(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each component is cached under its own pins; the assembled set under all of them."""
    build = importlib.import_module("conformance.sandbox.build")  # the package exports build()
    source = build.components_dir()
    for path in source.rglob("*"):
        if path.is_file() and path.suffix in (".go", ".mod", ".sum"):
            target = tmp_path / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    monkeypatch.setattr(build, "components_dir", lambda: tmp_path)
    before = {step.module_dir: build.part_key(step) for step in build.BUILDS}
    assembled = build.cache_key()
    with (tmp_path / "lws" / "go.mod").open("a") as mod:
        mod.write("\n// bumped\n")
    after = {step.module_dir: build.part_key(step) for step in build.BUILDS}
    assert {m for m in before if before[m] != after[m]} == {"lws"}
    assert build.cache_key() != assembled
    assert set(before) >= {"kubernetes", "prometheus"}
