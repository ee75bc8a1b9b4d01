"""Study definitions submitted as text (YAML, or JSON, which YAML reads too), with the line
of each field kept so that errors can point at the line to fix."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from pydantic import ValidationError

from gentune.service.errors import FieldError, InvalidInput, field_errors_from_pydantic
from gentune.service.schemas.study import StudySpec

MAX_DEFINITION_CHARS = 1_000_000


@dataclass
class DefinitionText:
    """A parsed definition and where each of its fields sits in the text."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` or of its nearest enclosing field that has one."""
        parts = path.split(".")
        while parts:
            line = self.lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None

    def locate(self, errors: list[FieldError]) -> list[FieldError]:
        return [replace(e, line=e.line or self.line_of(e.field)) for e in errors]


def parse_definition_text(
    text: str, max_depth: int = 32, max_values: int = 100_000
) -> DefinitionText:
    """Parse YAML/JSON text safely; a syntax error becomes a 422 naming its line. Nesting
    deeper than ``max_depth``, or more than ``max_values`` values once YAML aliases are
    expanded (a few lines of ``&a``/``*a`` can stand for billions), is refused before
    anything is built."""
    if len(text) > MAX_DEFINITION_CHARS:
        raise InvalidInput(
            [FieldError("body", f"is longer than {MAX_DEFINITION_CHARS:,} characters")]
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_size(node, max_depth, max_values)
            _check_json_like(node)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            [FieldError("body", f"is not valid YAML or JSON: {problem}", line=line)]
        ) from exc
    except RecursionError:
        raise InvalidInput([FieldError("body", f"nests deeper than {max_depth} levels")]) from None
    if not isinstance(data, dict):
        raise InvalidInput(
            [FieldError("body", "must be a mapping of fields (name, trainer, search_space, ...)")]
        )
    lines: dict[str, int] = {}
    if node is not None:
        _collect_lines(node, "", lines, set())
    return DefinitionText(data, lines)


def _check_size(root: yaml.Node, max_depth: int, max_values: int) -> None:
    """Depth and alias-expanded size of a composed YAML document, without recursion."""
    expanded: dict[int, int] = {}  # node id -> values it stands for, aliases expanded
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if id(node) in expanded:
            continue
        line = node.start_mark.line + 1
        if depth > max_depth:
            raise InvalidInput(
                [FieldError("body", f"nests deeper than {max_depth} levels", line=line)]
            )
        children = _children(node)
        if not children_done and children:
            stack.append((node, depth, True))
            stack.extend(
                (child, depth + 1, False) for child in children if id(child) not in expanded
            )
            continue
        total = 1 + sum(expanded.get(id(child), 1) for child in children)
        if total > max_values:
            raise InvalidInput(
                [
                    FieldError(
                        "body",
                        f"stands for more than {max_values:,} values once its YAML aliases "
                        "are expanded",
                        line=line,
                    )
                ]
            )
        expanded[id(node)] = total


JSON_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")
}
"""YAML types a definition may hold: those JSON has too (it is stored and served as JSON)."""
TAG_WORDS = {
    "tag:yaml.org,2002:binary": "binary data (!!binary)",
    "tag:yaml.org,2002:timestamp": "a date or time (quote it to make it text)",
    "tag:yaml.org,2002:set": "a set (!!set; write a list)",
    "tag:yaml.org,2002:omap": "an ordered mapping (!!omap; write a mapping)",
    "tag:yaml.org,2002:pairs": "a list of pairs (!!pairs; write a mapping)",
}


def _check_json_like(root: yaml.Node) -> None:
    """Every value of a type JSON has, and no key twice in one mapping (YAML keeps the last
    silently, so the first would be lost without a word)."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        line = node.start_mark.line + 1
        if node.tag not in JSON_TAGS and node.tag != "tag:yaml.org,2002:merge":
            what = TAG_WORDS.get(node.tag, f"of the YAML type {node.tag}")
            raise InvalidInput(
                [
                    FieldError(
                        path or "body",
                        f"is {what}: a definition holds only text, numbers, true/false, null, "
                        "lists and mappings",
                        line=line,
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                at = key.start_mark.line + 1
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else f"<line {at}>"
                child = f"{path}.{name}" if path else name
                if isinstance(key, yaml.ScalarNode) and name in first:
                    raise InvalidInput(
                        [
                            FieldError(
                                child,
                                f"is given twice in one mapping (lines {first[name]} and "
                                f"{at}); keep one",
                                line=at,
                            )
                        ]
                    )
                first[name] = at
                stack.extend(((key, child), (value, child)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(
                (item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(node.value)
            )


class _Object(dict[str, Any]):
    """A JSON object as parsed, with the keys it gave more than once."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    made = _Object(pairs)
    made.repeated = [] if len(made) == len(pairs) else _repeats([k for k, _ in pairs])
    return made


def _repeats(keys: list[str]) -> list[str]:
    seen: set[str] = set()
    repeated = []
    for key in keys:
        if key in seen:
            repeated.append(key)
        seen.add(key)
    return repeated


def check_json_keys(body: bytes) -> None:
    """Refuse a JSON body that gives a key twice in one object (JSON parsers keep the last
    silently). A body that is not JSON is left to the schema's own error."""
    try:
        data = json.loads(body, object_pairs_hook=_object)
    except (ValueError, RecursionError):
        return
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Object):
            if value.repeated:
                key = value.repeated[0]
                raise InvalidInput(
                    [
                        FieldError(
                            f"{path}.{key}" if path else key,
                            "is given twice in one object; keep one (JSON parsers would "
                            "silently keep the last)",
                        )
                    ]
                )
            stack.extend((item, f"{path}.{k}" if path else k) for k, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(value))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def spec_from_text(
    text: str, max_depth: int = 32, max_values: int = 100_000
) -> tuple[StudySpec, DefinitionText]:
    """A ``StudySpec`` from text; schema errors carry the lines of their fields."""
    parsed = parse_definition_text(text, max_depth, max_values)
    try:
        return StudySpec.model_validate(parsed.data), parsed
    except ValidationError as exc:
        errors = field_errors_from_pydantic(exc.errors(), parsed.data)
        raise InvalidInput(parsed.locate(errors)) from exc


def _collect_lines(node: yaml.Node, path: str, lines: dict[str, int], seen: set[int]) -> None:
    # Aliases share nodes: each node is walked once, so an alias bomb costs nothing here.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            lines[child] = key.start_mark.line + 1
            _collect_lines(value, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}.{index}" if path else str(index)
            lines[child] = item.start_mark.line + 1
            _collect_lines(item, child, lines, seen)
