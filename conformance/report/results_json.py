"""results.json: write it, and read one back (validated against reports/results.schema.json)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from conformance.errors import KaicError
from conformance.resources import data_path
from conformance.results import Run


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(data_path("results.schema.json").read_text("utf-8"))
    return loaded


def validation_errors(data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema())
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(top)'}: {err.message}"
        for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]


def write(run: Run, path: Path) -> Path:
    path.write_text(json.dumps(run.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def load(path: Path) -> Run:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KaicError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KaicError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise KaicError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    errors = validation_errors(data)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise KaicError(f"{path}: not a kaic results file: {errors[0]}{more}")
    return Run.from_json(data)
