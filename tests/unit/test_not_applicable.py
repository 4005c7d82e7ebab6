"""Not-applicable only where the catalog says so: checks skip only through `not_applicable`,
for a condition one of their requirements lists, and reports say which condition it was."""

from __future__ import annotations

import ast
from pathlib import Path

from conformance.checks import discover
from conformance.checks.registry import CHECKS_DIR
from conformance.profiles import CATALOG_FILE, load_catalog, profiles_dir
from conformance.report import summary
from conformance.results import CheckResult, RequirementResult, Run


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    def named(node: ast.Call) -> bool:
        return name in (getattr(node.func, "attr", None), getattr(node.func, "id", None))

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and named(n)]


def test_checks_skip_only_for_a_condition_their_requirements_list() -> None:
    catalog = load_catalog(profiles_dir() / CATALOG_FILE)
    checks = discover()
    for path in sorted(Path(CHECKS_DIR).glob("*.py")):
        tree = ast.parse(path.read_text())
        assert not calls(tree, "skip"), f"{path.name}: skips without a condition (pytest.skip)"
        module = path.stem
        requirements = {r for info in checks.values() if info.module.endswith(module)
                        for r in info.requirements}  # fmt: skip
        listed = {cid for r in requirements for cid, _ in catalog[r].not_applicable_when}
        for call in calls(tree, "not_applicable"):
            first = call.args[0]
            assert isinstance(first, ast.Constant), f"{path.name}:{call.lineno}: a literal id"
            where = f"{path.name}:{call.lineno}"
            assert first.value in listed, f"{where}: {first.value!r} not in {sorted(requirements)}"


def test_the_autoscaling_and_operator_requirements_cannot_be_skipped_away() -> None:
    catalog = load_catalog(profiles_dir() / CATALOG_FILE)
    assert catalog["pod_autoscaling"].not_applicable_when == ()
    assert [cid for cid, _ in catalog["cluster_autoscaling"].not_applicable_when] == [
        "no-autoscaler"
    ]
    assert "no-operator" not in dict(catalog["robust_controller"].not_applicable_when)


def test_summary_names_the_condition_met() -> None:
    check = CheckResult(
        "cluster-autoscaling.accelerator-group",
        "skipped",
        message="no cluster autoscaler found",
        condition="no-autoscaler",
    )
    req = RequirementResult(
        "cluster_autoscaling",
        "MUST",
        "not-applicable",
        [check],
        reason="cluster-autoscaling.accelerator-group: no cluster autoscaler found",
        not_applicable_when={"no-autoscaler": "The platform has none."},
    )
    run = Run("p", "P", "20261203-000000-abcd", {}, "a", "b", 1.0, [req])
    text = summary.render(run)
    assert "- `cluster_autoscaling`: The platform has none. (cluster-autoscaling" in text
