"""Deleting what kaic created: per check (a registry) and per run or all runs (a label sweep)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes.client import ApiException
from kubernetes.dynamic.exceptions import NotFoundError

from conformance.cluster.client import Cluster, ObjectRef
from conformance.cluster.discovery import ApiResource, api_resources, preferred_group_versions
from conformance.cluster.labels import selector


@dataclass
class Registry:
    """Objects a check created outside its namespace, deleted in reverse order at its end."""

    refs: list[ObjectRef] = field(default_factory=list)

    def add(self, ref: ObjectRef) -> None:
        if ref not in self.refs:
            self.refs.append(ref)

    def delete_all(self, cluster: Cluster) -> list[str]:
        """Delete everything registered; return one line per object that could not be deleted."""
        problems = []
        for ref in reversed(self.refs):
            try:
                cluster.delete(ref)
            except (ApiException, NotFoundError) as exc:
                problems.append(f"{ref}: {getattr(exc, 'reason', exc)}")
        self.refs.clear()
        return problems


@dataclass
class SweepResult:
    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def deletable_types(cluster: Cluster, *, namespaced: bool) -> list[ApiResource]:
    found: list[ApiResource] = []
    for gv in preferred_group_versions(cluster):
        try:
            resources = api_resources(cluster, gv)
        except ApiException:
            continue  # an unavailable aggregated API: nothing of ours can be there
        found.extend(
            r
            for r in resources
            if r.namespaced == namespaced
            and {"list", "delete"} <= set(r.verbs)
            and not (gv == "v1" and r.kind == "Namespace")
        )
    return found


def sweep(
    cluster: Cluster,
    run_id: str | None,
    *,
    include_kept: bool = True,
    all_namespaces: bool = False,
    wait_s: float = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> SweepResult:
    """Delete kaic's namespaces and labelled cluster-scoped objects of one run (or all runs).

    `all_namespaces` also looks for labelled objects in every namespace (slower; for
    `kaic cleanup`). `wait_s` waits until the namespaces are really gone.
    """
    result = SweepResult()
    labels = selector(run_id, include_kept=include_kept)
    namespaces = [
        n["metadata"]["name"]
        for n in cluster.list_objects("v1", "Namespace", label_selector=labels)
    ]
    for ns in namespaces:
        progress(f"deleting Namespace/{ns}")
        _delete(cluster, ObjectRef("v1", "Namespace", ns), result)
    scopes = [False, True] if all_namespaces else [False]
    for namespaced in scopes:
        for rtype in deletable_types(cluster, namespaced=namespaced):
            try:
                objects = cluster.list_objects(
                    rtype.group_version, rtype.kind, label_selector=labels
                )
            except (ApiException, NotFoundError):
                continue
            for obj in objects:
                ref = ObjectRef(
                    rtype.group_version,
                    rtype.kind,
                    obj["metadata"]["name"],
                    obj["metadata"].get("namespace"),
                )
                if ref.namespace in namespaces:
                    continue  # goes with its namespace
                progress(f"deleting {ref}")
                _delete(cluster, ref, result)
    if wait_s and namespaces:
        progress(f"waiting for {len(namespaces)} namespace(s) to be gone")
        cluster.wait_for(
            "v1",
            "Namespace",
            lambda objs: not objs,
            awaiting=f"namespaces {', '.join(namespaces)} to be deleted",
            timeout_s=wait_s,
            label_selector=labels,
        )
    return result


def _delete(cluster: Cluster, ref: ObjectRef, result: SweepResult) -> None:
    try:
        if cluster.delete(ref):
            result.deleted.append(str(ref))
    except (ApiException, NotFoundError) as exc:
        result.problems.append(f"{ref}: {getattr(exc, 'reason', exc)}")
