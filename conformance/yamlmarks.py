"""YAML loading that remembers the line of every key, for precise validation errors."""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class MarkedYAMLError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse one YAML document; return the data and a map from key path to 1-based line."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # e.g. control characters, caught by the reader
        raise MarkedYAMLError(1, str(exc).splitlines()[0]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise MarkedYAMLError(line, str(exc.problem or exc)) from None
    except yaml.YAMLError as exc:
        raise MarkedYAMLError(1, str(exc)) from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines
    try:
        return _convert(loader, node, (), lines), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise MarkedYAMLError(mark.line + 1 if mark else 1, str(exc.problem or exc)) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise MarkedYAMLError(1, str(exc).splitlines()[0] if str(exc) else "invalid") from None


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                raise MarkedYAMLError(key_node.start_mark.line + 1, "mapping keys must be strings")
            if key in out:
                raise MarkedYAMLError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            out[key] = _convert(loader, value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
