"""Profiles: which requirements a target demands, at which level, verified by which checks.

`profiles/requirements.yaml` is the catalog of requirements (description, category, checks);
each `profiles/<name>.yaml` selects requirements from it and gives each a level.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

from conformance.errors import ProfileError
from conformance.resources import data_path
from conformance.yamlmarks import MarkedYAMLError, Path_, load_with_lines

Level = Literal["MUST", "SHOULD"]
LEVELS: tuple[Level, ...] = ("MUST", "SHOULD")
CATALOG_FILE = "requirements.yaml"
SOURCES = ("cncf", "kaic")
_REQUIREMENT_ID = re.compile(r"^[a-z][a-z0-9_]*$")
CHECK_ID = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")
_MINOR = re.compile(r"^1\.\d+$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Requirement:
    id: str
    category: str
    level: Level
    source: str
    description: str
    checks: tuple[str, ...]
    condition: str | None = None
    # condition id -> words a reviewer reads: the only reasons its checks may skip
    not_applicable_when: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    description: str
    requirements: tuple[Requirement, ...]
    kubernetes_version: str | None = None
    kubernetes_minimum: str | None = None
    checklist: str | None = None
    path: Path | None = None
    draft: bool = False  # a checklist announced but not published: no submission for it

    def requirement(self, requirement_id: str) -> Requirement:
        for req in self.requirements:
            if req.id == requirement_id:
                return req
        raise KeyError(requirement_id)

    def check_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for req in self.requirements:
            seen.update(dict.fromkeys(req.checks))
        return list(seen)

    def requirements_of(self, check_id: str) -> list[Requirement]:
        return [req for req in self.requirements if check_id in req.checks]


@dataclass(frozen=True)
class _CatalogEntry:
    category: str
    source: str
    description: str
    checks: tuple[str, ...]
    condition: str | None
    not_applicable_when: tuple[tuple[str, str], ...] = ()


class _Doc:
    """One YAML file being validated: raises errors that carry file and line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            self.data, self.lines = load_with_lines(text)
        except MarkedYAMLError as exc:
            raise ProfileError(f"{path}:{exc.line}: not valid YAML: {exc}") from None

    def error(self, key: Path_, message: str) -> ProfileError:
        line = self._line(key)
        where = _dotted(key)
        return ProfileError(f"{self.path}:{line}: {where + ': ' if where else ''}{message}")

    def _line(self, key: Path_) -> int:
        while key not in self.lines and key:
            key = key[:-1]
        return self.lines.get(key, 1)

    def mapping(self, key: Path_, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {_kind(value)}")
        return cast(Mapping[str, Any], value)

    def string(self, key: Path_, value: Any, *, required: bool = True) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {_kind(value)}")
        return value.strip()

    def only_keys(self, key: Path_, mapping: Mapping[str, Any], allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for name in mapping:
            if name not in allowed:
                raise self.error((*key, name), f"unknown key (allowed: {', '.join(allowed)})")

    def check_list(self, key: Path_, value: Any, known: set[str] | None) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of check ids, got {_kind(value)}")
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not CHECK_ID.match(item):
                raise self.error(
                    (*key, i), f"not a check id (like 'dra.claim-allocated'): {item!r}"
                )
            if known is not None and item not in known:
                raise self.error((*key, i), f"unknown check id {item!r}")
            if item in out:
                raise self.error((*key, i), f"check {item!r} listed twice")
            out.append(item)
        return tuple(out)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _dotted(key: Path_) -> str:
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


def profiles_dir() -> Path:
    return data_path("profiles")


def available_profiles(directory: Path | None = None) -> list[str]:
    directory = directory or profiles_dir()
    return sorted(p.stem for p in directory.glob("*.yaml") if p.name != CATALOG_FILE)


def load_catalog(path: Path, known_checks: set[str] | None = None) -> dict[str, _CatalogEntry]:
    doc = _Doc(path)
    top = doc.mapping((), doc.data)
    doc.only_keys((), top, ("kind", "requirements"))
    if top.get("kind") != "RequirementCatalog":
        raise doc.error(("kind",), "must be 'RequirementCatalog'")
    entries = doc.mapping(("requirements",), top.get("requirements"))
    catalog: dict[str, _CatalogEntry] = {}
    for req_id, raw in entries.items():
        key: Path_ = ("requirements", req_id)
        if not _REQUIREMENT_ID.match(str(req_id)):
            raise doc.error(key, "requirement ids are lower_snake_case")
        body = doc.mapping(key, raw)
        doc.only_keys(
            key,
            body,
            ("category", "source", "description", "checks", "condition", "not_applicable_when"),
        )
        source = doc.string((*key, "source"), body.get("source"))
        if source not in SOURCES:
            raise doc.error((*key, "source"), f"must be one of {', '.join(SOURCES)}")
        catalog[req_id] = _CatalogEntry(
            category=cast(str, doc.string((*key, "category"), body.get("category"))),
            source=source,
            description=cast(str, doc.string((*key, "description"), body.get("description"))),
            checks=doc.check_list((*key, "checks"), body.get("checks", []), known_checks),
            condition=doc.string((*key, "condition"), body.get("condition"), required=False),
            not_applicable_when=_parse_conditions(doc, key, body.get("not_applicable_when", {})),
        )
    return catalog


_CONDITION_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _parse_conditions(doc: _Doc, key: Path_, raw: Any) -> tuple[tuple[str, str], ...]:
    where: Path_ = (*key, "not_applicable_when")
    body = doc.mapping(where, raw)
    out = []
    for cid, text in body.items():
        if not _CONDITION_ID.match(str(cid)):
            raise doc.error((*where, cid), "condition ids are lower-kebab-case")
        out.append((str(cid), cast(str, doc.string((*where, cid), text))))
    return tuple(out)


@cache
def conditions_of(profile: str, requirement_ids: tuple[str, ...]) -> dict[str, str]:
    """The not-applicable conditions the profile's requirements among these list (id -> words)."""
    loaded = load_profile(profile)
    return {cid: text for req in loaded.requirements if req.id in requirement_ids
            for cid, text in req.not_applicable_when}  # fmt: skip


AUTO = "auto"
_SERVER_MINOR = re.compile(r"^v?(\d+)\.(\d+)")


def parse_minor(version: str) -> tuple[int, int] | None:
    """(major, minor) of a server version such as v1.35.2."""
    match = _SERVER_MINOR.match(version)
    return (int(match.group(1)), int(match.group(2))) if match else None


_CHECKLIST_PROFILE = re.compile(r"^cncf-ai-v1\.(\d+)$")


def checklist_profiles(directory: Path | None = None) -> list[tuple[int, str]]:
    """(minor, name) of the published CNCF checklist profiles, oldest first (drafts left out)."""
    found = []
    for name in available_profiles(directory):
        match = _CHECKLIST_PROFILE.match(name)
        if match and not load_profile(name, directory=directory).draft:
            found.append((int(match.group(1)), name))
    return sorted(found)


def newest_checklist_for(minor: int | None, directory: Path | None = None) -> str:
    """The default profile: the newest published checklist whose Kubernetes version a cluster
    of 1.<minor> meets (the oldest if it meets none; the newest if the version is unknown)."""
    known = checklist_profiles(directory)
    if minor is None:
        return known[-1][1]
    met = [name for version, name in known if version <= minor]
    return met[-1] if met else known[0][1]


def load_profile(
    name_or_path: str | Path,
    known_checks: set[str] | None = None,
    directory: Path | None = None,
) -> Profile:
    """Load a profile by name (from the profiles folder) or by path to a YAML file."""
    directory = directory or profiles_dir()
    if name_or_path == AUTO:
        name_or_path = newest_checklist_for(None, directory)
    path = _resolve(name_or_path, directory)
    catalog_path = path.parent / CATALOG_FILE
    if not catalog_path.exists():
        catalog_path = directory / CATALOG_FILE
    catalog = load_catalog(catalog_path, known_checks)
    return _parse_profile(_Doc(path), catalog, known_checks)


def _resolve(name_or_path: str | Path, directory: Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise ProfileError(f"profile file {candidate} does not exist")
        return candidate
    named = directory / f"{name_or_path}.yaml"
    if str(name_or_path) == CATALOG_FILE.removesuffix(".yaml") or not named.is_file():
        known = ", ".join(available_profiles(directory))
        raise ProfileError(f"unknown profile {str(name_or_path)!r} (available: {known})")
    return named


def _parse_profile(
    doc: _Doc, catalog: Mapping[str, _CatalogEntry], known_checks: set[str] | None
) -> Profile:
    top = doc.mapping((), doc.data)
    doc.only_keys(
        (),
        top,
        (
            "kind",
            "name",
            "title",
            "description",
            "kubernetes",
            "checklist",
            "draft",
            "requirements",
        ),
    )
    if top.get("kind") != "Profile":
        raise doc.error(("kind",), "must be 'Profile'")
    name = cast(str, doc.string(("name",), top.get("name")))
    version, minimum = _parse_kubernetes(doc, top.get("kubernetes"))
    raw_reqs = top.get("requirements")
    if not isinstance(raw_reqs, list) or not raw_reqs:
        raise doc.error(("requirements",), "must be a non-empty list")
    requirements: list[Requirement] = []
    for i, raw in enumerate(raw_reqs):
        key: Path_ = ("requirements", i)
        body = doc.mapping(key, raw)
        doc.only_keys(key, body, ("id", "level", "checks", "condition"))
        req_id = cast(str, doc.string((*key, "id"), body.get("id")))
        if req_id not in catalog:
            raise doc.error((*key, "id"), f"unknown requirement {req_id!r} (see {CATALOG_FILE})")
        if any(r.id == req_id for r in requirements):
            raise doc.error((*key, "id"), f"requirement {req_id!r} listed twice")
        level = body.get("level")
        if level not in LEVELS:
            raise doc.error((*key, "level"), f"must be MUST or SHOULD, got {_kind(level)}")
        entry = catalog[req_id]
        checks = (
            doc.check_list((*key, "checks"), body["checks"], known_checks)
            if "checks" in body
            else entry.checks
        )
        condition = doc.string((*key, "condition"), body.get("condition"), required=False)
        requirements.append(
            Requirement(
                id=req_id,
                category=entry.category,
                level=cast(Level, level),
                source=entry.source,
                description=entry.description,
                checks=checks,
                condition=condition or entry.condition,
                not_applicable_when=entry.not_applicable_when,
            )
        )
    return Profile(
        name=name,
        title=cast(str, doc.string(("title",), top.get("title", name))),
        description=doc.string(("description",), top.get("description"), required=False) or "",
        requirements=tuple(requirements),
        kubernetes_version=version,
        kubernetes_minimum=minimum,
        checklist=doc.string(("checklist",), top.get("checklist"), required=False),
        path=doc.path,
        draft=_parse_draft(doc, top.get("draft", False)),
    )


def _parse_draft(doc: _Doc, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise doc.error(("draft",), f"must be true or false, got {_kind(raw)}")
    return raw


def _parse_kubernetes(doc: _Doc, raw: Any) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    body = doc.mapping(("kubernetes",), raw)
    doc.only_keys(("kubernetes",), body, ("version", "minimum"))
    values: list[str | None] = []
    for field in ("version", "minimum"):
        value = body.get(field)
        if value is not None and (not isinstance(value, str) or not _MINOR.match(value)):
            raise doc.error(
                ("kubernetes", field),
                f'must be a quoted minor version like "1.35", got {_kind(value)}',
            )
        values.append(value)
    if values[0] and values[1]:
        raise doc.error(("kubernetes",), "give either version or minimum, not both")
    return values[0], values[1]


def validate_file(path: Path, known_checks: set[str] | None = None) -> str:
    """Validate a profile or the requirement catalog; return a one-line description."""
    doc = _Doc(path)
    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    if kind == "RequirementCatalog":
        catalog = load_catalog(path, known_checks)
        return f"{path}: requirement catalog with {len(catalog)} requirements"
    profile = load_profile(path, known_checks)
    return f"{path}: profile {profile.name} with {len(profile.requirements)} requirements"
