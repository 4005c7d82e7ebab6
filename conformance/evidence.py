"""What a check saw, recorded for results.json (`evidence.objects`, `evidence.observed`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Evidence:
    objects: list[str] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)

    def object(self, ref: object) -> None:
        """Record an object the check created or inspected (ObjectRef or "Kind/ns/name")."""
        text = str(ref)
        if text not in self.objects:
            self.objects.append(text)

    def observe(self, key: str, value: Any) -> None:
        """Record a value the check observed; it must be JSON-serialisable."""
        json.dumps(value)
        self.observed[key] = value

    def to_json(self) -> dict[str, Any]:
        return {"objects": list(self.objects), "observed": dict(self.observed)}
