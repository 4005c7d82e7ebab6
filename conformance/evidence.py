"""What a check saw, recorded for results.json (`evidence.objects`, `.observed`, `.manifests`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Evidence:
    objects: list[str] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def object(self, ref: object) -> None:
        """Record an object the check created or inspected (ObjectRef or "Kind/ns/name")."""
        text = str(ref)
        if text not in self.objects:
            self.objects.append(text)

    def observe(self, key: str, value: Any) -> None:
        """Record a value the check observed; it must be JSON-serialisable."""
        json.dumps(value)
        self.observed[key] = value

    def manifest(self, body: dict[str, Any]) -> None:
        """Record a manifest the check applied, as sent (kaic's labels are added on apply)."""
        self.manifests.append(json.loads(json.dumps(body, default=str)))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"objects": list(self.objects), "observed": dict(self.observed)}
        if self.manifests:
            out["manifests"] = list(self.manifests)
        return out
