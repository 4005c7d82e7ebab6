"""Profiles: the shipped ones carry the public checklists; malformed files get precise errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.checks import discover
from conformance.errors import ProfileError
from conformance.profiles import (
    CATALOG_FILE,
    available_profiles,
    load_catalog,
    load_profile,
    profiles_dir,
    validate_file,
)
from conformance.resources import data_path

CHECKLISTS = data_path("fixtures") / "samples" / "cncf-checklists"
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
ERROR_SHAPE = re.compile(r"^.+\.yaml:\d+: .+")


def checklist_levels(minor: str) -> dict[str, tuple[str, str]]:
    """id -> (category, level) from the public CNCF checklist template."""
    data = yaml.safe_load((CHECKLISTS / f"AIConformance-{minor}.yaml").read_text())
    return {
        item["id"]: (category, item["level"])
        for category, items in data["spec"].items()
        for item in items
    }


@pytest.mark.parametrize("minor", ["1.33", "1.34", "1.35", "1.36"])
def test_cncf_profile_carries_every_checklist_requirement(minor: str) -> None:
    profile = load_profile(f"cncf-ai-v{minor}", known_checks=set(discover()))
    ours = {r.id: (r.category, r.level) for r in profile.requirements if r.source == "cncf"}
    assert ours == checklist_levels(minor)
    assert profile.kubernetes_version == minor


def test_cncf_137_is_136_plus_workload_sandboxing() -> None:
    v136 = {r.id: r.level for r in load_profile("cncf-ai-v1.36").requirements}
    v137 = {r.id: r.level for r in load_profile("cncf-ai-v1.37").requirements}
    assert v137 == {**v136, "workload_sandboxing": "SHOULD"}


def test_conditional_musts_are_marked() -> None:
    profile = load_profile("cncf-ai-v1.35")
    conditional = {r.id for r in profile.requirements if r.condition}
    assert conditional == {"cluster_autoscaling", "pod_autoscaling"}


@pytest.mark.parametrize("name", available_profiles())
def test_shipped_profiles_validate_against_shipped_checks(name: str) -> None:
    profile = load_profile(name, known_checks=set(discover()))
    assert profile.name == name
    assert profile.requirements


def test_capability_profiles_exist() -> None:
    assert {"inference", "batch"} <= set(available_profiles())


def test_check_markers_agree_with_the_catalog() -> None:
    catalog = load_catalog(profiles_dir() / CATALOG_FILE, known_checks=set(discover()))
    for check in discover().values():
        listed_under = {rid for rid, entry in catalog.items() if check.id in entry.checks}
        assert listed_under == set(check.requirements), check.id


def write_profile(tmp_path: Path, body: str) -> Path:
    (tmp_path / CATALOG_FILE).write_text((profiles_dir() / CATALOG_FILE).read_text())
    path = tmp_path / "mine.yaml"
    path.write_text(body)
    return path


VALID = """\
kind: Profile
name: mine
title: Mine
kubernetes:
  version: "1.35"
requirements:
  - {id: cluster_baseline, level: MUST}
  - {id: dra_support, level: SHOULD}
"""


def test_valid_custom_profile_loads(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path, VALID))
    assert [r.id for r in profile.requirements] == ["cluster_baseline", "dra_support"]
    assert profile.requirement("dra_support").level == "SHOULD"
    assert "cluster.reachable" in profile.check_ids()


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        (VALID.replace("level: SHOULD", "level: MAYBE"), 8, "requirements[1].level: must be MUST"),
        (VALID.replace("dra_support", "dra_suport"), 8, "unknown requirement 'dra_suport'"),
        (VALID.replace('"1.35"', "1.35"), 5, "kubernetes.version: must be a quoted minor"),
        (VALID.replace("title: Mine", "title: Mine\ncolour: blue"), 4, "colour: unknown key"),
        (
            VALID.replace("dra_support, level: SHOULD", "cluster_baseline, level: MUST"),
            8,
            "listed twice",
        ),
        (VALID.replace("kind: Profile", "kind: Profil"), 1, "kind: must be 'Profile'"),
        (VALID + "  - {id: gpu_sharing, level: MUST, checks: [nope]}\n", 9, "not a check id"),
        (
            VALID + "  - {id: gpu_sharing, level: MUST, checks: [dra.nope]}\n",
            9,
            "unknown check id 'dra.nope'",
        ),
        ("kind: Profile\nname: [unclosed\n", 3, "not valid YAML"),
    ],
)
def test_malformed_profile_errors_name_file_line_and_key(
    tmp_path: Path, body: str, line: int, fragment: str
) -> None:
    path = write_profile(tmp_path, body)
    with pytest.raises(ProfileError) as err:
        load_profile(path, known_checks=set(discover()))
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert "\n" not in message


def test_unknown_profile_name_lists_the_available_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'nope' \(available: batch, "):
        load_profile("nope")


def test_validate_file_describes_catalog_and_profile(tmp_path: Path) -> None:
    assert "requirement catalog" in validate_file(profiles_dir() / CATALOG_FILE)
    assert "profile mine with 2 requirements" in validate_file(write_profile(tmp_path, VALID))


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(["kind", "name", "title", "kubernetes", "requirements", "checklist"]),
    value=yaml_values,
)
def test_any_malformed_top_level_value_is_a_located_profile_error(
    tmp_path: Path, key: str, value: object
) -> None:
    doc = yaml.safe_load(VALID)
    doc[key] = value
    path = write_profile(tmp_path, yaml.safe_dump(doc))
    try:
        load_profile(path)
    except ProfileError as exc:
        assert ERROR_SHAPE.match(str(exc)), str(exc)
        assert "\n" not in str(exc)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=yaml_values, field=st.sampled_from(["id", "level", "checks", "condition", "extra"]))
def test_any_malformed_requirement_entry_is_a_located_profile_error(
    tmp_path: Path, value: object, field: str
) -> None:
    doc = yaml.safe_load(VALID)
    doc["requirements"][1][field] = value
    path = write_profile(tmp_path, yaml.safe_dump(doc))
    try:
        load_profile(path, known_checks=set(discover()))
    except ProfileError as exc:
        assert ERROR_SHAPE.match(str(exc)), str(exc)
    else:
        # Only values that are genuinely valid may load.
        assert field in ("condition", "checks", "level", "id")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_escapes_as_another_exception(tmp_path: Path, text: str) -> None:
    path = write_profile(tmp_path, text)
    try:
        load_profile(path)
    except ProfileError as exc:
        assert str(exc).startswith(str(path))


def test_the_default_profile_is_the_newest_checklist_the_cluster_meets() -> None:
    from conformance.profiles import checklist_profiles, newest_checklist_for

    published = [name for _, name in checklist_profiles()]
    assert published[-1] == "cncf-ai-v1.37"
    assert "cncf-ai-v1.38" not in published  # a draft is never the default
    assert newest_checklist_for(35) == "cncf-ai-v1.35"
    assert newest_checklist_for(38) == "cncf-ai-v1.37"
    assert newest_checklist_for(30) == "cncf-ai-v1.33"
    assert newest_checklist_for(None) == "cncf-ai-v1.37"
    assert load_profile("auto").name == "cncf-ai-v1.37"


def test_the_1_38_draft_makes_driver_runtime_management_a_must() -> None:
    draft = load_profile("cncf-ai-v1.38")
    assert draft.draft
    assert draft.requirement("driver_runtime_management").level == "MUST"
    assert not load_profile("cncf-ai-v1.37").draft
    assert load_profile("cncf-ai-v1.37").requirement("workload_sandboxing").level == "SHOULD"


def test_draft_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "kind: Profile\nname: p\ndraft: maybe\n"
        "requirements:\n  - {id: gpu_sharing, level: SHOULD}\n"
    )
    with pytest.raises(ProfileError, match=r"draft.*must be true or false"):
        load_profile(path)


def test_kaic_run_says_which_profile_it_chose() -> None:
    from rich.console import Console

    from conformance.runner import resolve_profile
    from conformance.settings import Settings

    console = Console(record=True, width=200)
    chosen = resolve_profile(Settings(run_id="20261203-000000-abcd"), True, console)
    assert chosen.profile == "cncf-ai-v1.35"  # the sandbox runs Kubernetes v1.35
    assert "Profile cncf-ai-v1.35: the newest CNCF checklist that Kubernetes v1.35" in (
        console.export_text()
    )
