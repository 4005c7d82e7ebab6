"""The sandbox's Karpenter configuration: a node it adds is the topology's GPU node (labels,
taint, GPUs the emulated host gives its pods), and the two faults change only what they name."""

from __future__ import annotations

from conformance.sandbox import autoscaler, topology


def test_a_node_karpenter_adds_is_a_device_plugin_gpu_node_of_the_instance_types_size() -> None:
    pool = autoscaler.node_pool()
    template = pool["spec"]["template"]
    (instance,) = autoscaler.instance_types()
    gpus = int(instance["resources"]["nvidia.com/gpu"])
    assert gpus == autoscaler.gpu_node_spec().gpus == 4
    # what the KWOK provider creates: the template's labels, plus Karpenter's own
    node = {"metadata": {"name": "kwok-gpu-abcde-123", "labels": {
        **template["metadata"]["labels"], "karpenter.sh/nodepool": "gpu"}}}  # fmt: skip
    spec = topology.spec_of(node, {})
    assert spec is not None
    assert (spec.kind, spec.gpus, spec.replicas) == ("device-plugin", gpus, 1)
    assert template["metadata"]["labels"][topology.KWOK_LABEL[0]] == topology.KWOK_LABEL[1]
    assert topology.GPU_TAINT in template["spec"]["taints"]
    assert not {"kubernetes.io/hostname", "kubernetes.io/os"} & set(template["metadata"]["labels"])
    assert template["metadata"]["annotations"][topology.HOST_DRIVER_ANNOTATION]


def test_a_node_of_the_topology_keeps_its_own_spec_and_a_cpu_node_has_none() -> None:
    known = {"gpu-ts-0": topology.NodeSpec("gpu-ts-0", "device-plugin", 1, 3)}
    assert topology.spec_of({"metadata": {"name": "gpu-ts-0"}}, known) == known["gpu-ts-0"]
    cpu = {"metadata": {"name": "x", "labels": {topology.NODE_KIND_LABEL: "cpu"}}}
    assert topology.spec_of(cpu, known) is None


def test_the_faults_cap_growth_or_forbid_removal_and_nothing_else() -> None:
    healthy = autoscaler.node_pool()
    assert healthy["spec"]["limits"] == {"nvidia.com/gpu": str(autoscaler.MAX_NODES * 4)}
    assert healthy["spec"]["disruption"]["budgets"] == [{"nodes": "100%"}]
    no_growth = autoscaler.node_pool(["autoscaler-no-growth"])
    assert no_growth["spec"]["limits"] == {"nvidia.com/gpu": "0"}
    assert no_growth["spec"]["disruption"] == healthy["spec"]["disruption"]
    kept = autoscaler.node_pool(["autoscaler-no-scale-down"])
    assert kept["spec"]["disruption"]["budgets"] == [{"nodes": "0"}]
    assert kept["spec"]["limits"] == healthy["spec"]["limits"]
    assert kept["spec"]["template"] == no_growth["spec"]["template"] == healthy["spec"]["template"]
