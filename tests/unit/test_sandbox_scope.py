"""What a sandbox is started with and built for: only the components the selected checks need
(a batch profile does not wait for Envoy's build), everything when in doubt."""

from __future__ import annotations

import importlib

from conformance.checks.registry import discover
from conformance.sandbox import lifecycle

build = importlib.import_module("conformance.sandbox.build")  # the package re-exports build()


def test_every_part_serves_a_known_component_or_the_core() -> None:
    assert {build.component_of(s) for s in build.BUILDS} <= {"", *lifecycle.COMPONENTS}
    core = [s.module_dir for s in build.BUILDS if build.component_of(s) == ""]
    assert core == ["etcd", "kubernetes", "kwok"]


def test_a_scoped_build_has_the_core_and_its_components_only() -> None:
    steps = build.steps_for(["kueue", "lws"])
    assert [s.module_dir for s in steps] == ["etcd", "kubernetes", "kwok", "kueue", "lws"]
    assert build.steps_for(None) == build.BUILDS
    assert build.cache_dir(steps) != build.cache_dir()  # assembled apart from the full set
    assert build.cache_dir(build.steps_for(lifecycle.COMPONENTS)) == build.cache_dir()


def test_every_check_area_says_what_it_needs() -> None:
    areas = {c.split(".", 1)[0] for c in discover()}
    assert areas == set(lifecycle.NEEDED_BY_AREA)
    needed = {c for needs in lifecycle.NEEDED_BY_AREA.values() for c in needs}
    assert needed <= set(lifecycle.COMPONENTS)


def test_a_batch_run_leaves_the_monitoring_and_gateways_out() -> None:
    left_out = lifecycle.not_needed(["kueue.admits-fitting-job", "gang.fitting-gang-runs",
                                     "lws.group-created", "gpu.taint-respected"])  # fmt: skip
    assert left_out == ["dra-driver", "prometheus", "accelerator-exporter",
                        "prometheus-adapter", "gateway", "ai-gateway", "autoscaler",
                        "kuberay", "kubeflow-trainer", "real-nodes"]  # fmt: skip
    assert "gateway" not in lifecycle.runs_components(left_out)
    assert "ai-gateway" not in lifecycle.runs_components(["gateway"])
    assert "prometheus-adapter" not in lifecycle.runs_components(["prometheus"])


def test_a_check_of_an_unknown_area_gets_every_component() -> None:
    assert lifecycle.not_needed(["mine.custom-check", "kueue.admits-fitting-job"]) == []
