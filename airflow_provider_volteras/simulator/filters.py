"""Listing filters, as the real API documents them ("listing-filter-json").

A filter is a term ``{"field": ..., "operator": ..., "value": ...}`` or a list of filters
(AND-ed), and the boolean functions ``{"and": [...]}``, ``{"or": [...]}`` (at least one
element each) and ``{"not": [one filter]}`` nest freely. Nested fields are named with a dot
(``commandArguments.limit``, ``metadata.lastSeenAt``).

Operators: ``isNull``, ``isNotNull`` (``value`` ignored, may be left out), ``==``, ``!=``,
``>``, ``<``, ``>=``, ``<=``, ``like``, ``ilike`` and ``notIlike`` (SQL patterns: ``%`` any
run, ``_`` one character, ``\\`` escapes). Datetime fields (``createdAt``, ``executedAt``, ...)
take ISO 8601 strings and compare as instants (microsecond precision; a value without an offset
is UTC). Comparisons follow SQL: a null field matches none of them except ``isNull``;
``== null`` and ``!= null`` mean ``isNull`` and ``isNotNull``.

``eq``, ``ne`` (aliases of ``==``/``!=``) and ``in`` (a list of ``==`` values) are accepted
for older clients but are not operators of the real API. Anything malformed answers
``REQUEST_VALIDATION_ERROR``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .constants import EXECUTION_STATUSES, VEHICLE_COMMANDS, _validation

#: The operators the real API documents.
OPERATORS: tuple[str, ...] = ("isNull", "isNotNull", "==", "!=", ">", "<", ">=", "<=", "like", "ilike", "notIlike")
#: Accepted for older clients only (not operators of the real API).
LEGACY_OPERATORS: tuple[str, ...] = ("eq", "ne", "in")
_ORDERING = (">", "<", ">=", "<=")
_PATTERNS = ("like", "ilike", "notIlike")
_MAX_DEPTH = 32


@dataclass(frozen=True)
class FieldSpec:
    """How a filterable field compares: ``string``, ``enum`` (``allowed`` values), ``datetime``,
    ``number``, ``bool``, ``object`` (only null checks; its members by dot) or ``any`` (members
    of an object: compared by their JSON type)."""

    kind: str
    allowed: tuple[str, ...] | None = None


_STRING = FieldSpec("string")
_DATETIME = FieldSpec("datetime")
_ANY = FieldSpec("any")

EXECUTION_FIELDS: dict[str, FieldSpec] = {
    "id": _STRING,
    "vehicleId": _STRING,
    "command": FieldSpec("enum", VEHICLE_COMMANDS),
    "status": FieldSpec("enum", EXECUTION_STATUSES),
    "failedReason": _STRING,
    "timeout": FieldSpec("number"),
    "executedAt": _DATETIME,
    "createdAt": _DATETIME,
    "commandArguments": FieldSpec("object"),
}
VEHICLE_FIELDS: dict[str, FieldSpec] = {
    "id": _STRING,
    "make": _STRING,
    "model": _STRING,
    "trim": _STRING,
    "modelYear": _STRING,
    "vin": _STRING,
    "registrationPlate": _STRING,
    "isRegNoValidated": FieldSpec("bool"),
    "regNoValidatedAt": _DATETIME,
    "metadata": FieldSpec("object"),
    "isListening": FieldSpec("bool"),
    "listeningLastUpdated": _DATETIME,
    "connectionStatus": _STRING,
    "connectionErrorCode": _STRING,
    "connectionErrorMessage": _STRING,
    "actionCategory": _STRING,
}
#: Members of object fields whose kind is known.
NESTED_FIELDS: dict[str, FieldSpec] = {
    "metadata.lastSeenAt": _DATETIME,
    "metadata.registrationDate": _STRING,
}

#: ``get(path)`` returns the raw value of a (possibly dotted, split) field of one item.
Getter = Callable[[tuple[str, ...]], Any]


def _micros(value: Any) -> int | None:
    """An instant as integer microseconds since the epoch (``None`` if not a datetime)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return round(value * 1_000_000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return True
    return type(a) is type(b) and isinstance(a, str | bool)


def _like_regex(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    out: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    if escaped:
        out.append(re.escape("\\"))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


class Node:
    """A parsed filter."""

    def matches(self, get: Getter) -> bool:
        raise NotImplementedError

    def key(self) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Term(Node):
    field: str
    path: tuple[str, ...]
    spec: FieldSpec
    op: str
    value: Any
    pattern: re.Pattern[str] | None = None

    def _actual(self, get: Getter) -> Any:
        raw = get(self.path)
        if self.spec.kind == "datetime":
            return _micros(raw)
        return raw

    def matches(self, get: Getter) -> bool:
        actual = self._actual(get)
        op, value = self.op, self.value
        if op == "isNull" or (op == "==" and value is None):
            return actual is None
        if op == "isNotNull" or (op == "!=" and value is None):
            return actual is not None
        if actual is None:
            return False
        if self.pattern is not None:
            if not isinstance(actual, str):
                return False
            found = self.pattern.fullmatch(actual) is not None
            return not found if op == "notIlike" else found
        if op == "in":
            return any(_comparable(actual, v) and actual == v for v in value)
        if not _comparable(actual, value):
            return False
        if op == "==":
            return bool(actual == value)
        if op == "!=":
            return bool(actual != value)
        if op == ">":
            return bool(actual > value)
        if op == "<":
            return bool(actual < value)
        if op == ">=":
            return bool(actual >= value)
        return bool(actual <= value)

    def key(self) -> Any:
        return [self.field, self.op, list(self.value) if isinstance(self.value, tuple) else self.value]


@dataclass(frozen=True, eq=False)
class BoolNode(Node):
    function: str  # "and", "or" or "not"
    children: tuple[Node, ...]

    def matches(self, get: Getter) -> bool:
        if self.function == "and":
            return all(child.matches(get) for child in self.children)
        if self.function == "or":
            return any(child.matches(get) for child in self.children)
        return not self.children[0].matches(get)

    def key(self) -> Any:
        return {self.function: [child.key() for child in self.children]}


def _resolve(name: Any, fields: Mapping[str, FieldSpec]) -> tuple[tuple[str, ...], FieldSpec]:
    if not isinstance(name, str) or not name:
        raise _validation("filter field must be a non-empty string", supportedFields=sorted(fields))
    path = tuple(name.split("."))
    spec = fields.get(path[0])
    if spec is None or any(not part for part in path):
        raise _validation(f"unsupported filter field {name!r}", supportedFields=sorted(fields))
    if len(path) == 1:
        return path, spec
    if spec.kind != "object":
        raise _validation(f"field {path[0]!r} has no nested fields", supportedFields=sorted(fields))
    return path, NESTED_FIELDS.get(name, _ANY)


def _check_value(name: str, spec: FieldSpec, op: str, value: Any) -> Any:
    """Validate a term's value for its field and operator; return it normalised."""
    kind = spec.kind
    if op in _PATTERNS:
        if kind not in ("string", "enum", "any"):
            raise _validation(f"operator {op!r} needs a text field, not {name!r}")
        if not isinstance(value, str):
            raise _validation(f"operator {op!r} needs a string pattern for {name!r}")
        return value
    if value is None:
        if op in _ORDERING:
            raise _validation(f"operator {op!r} needs a value for {name!r}")
        return None
    if kind == "object":
        raise _validation(f"field {name!r} is an object: compare its members with a dot, or use isNull/isNotNull")
    if kind == "datetime":
        micros = _micros(value) if isinstance(value, str) else None
        if micros is None:
            raise _validation(f"filter value for {name!r} must be an ISO 8601 datetime string", value=value)
        return micros
    if kind in ("string", "enum"):
        if not isinstance(value, str):
            raise _validation(f"filter value for {name!r} must be a string")
        if kind == "enum" and op in ("==", "!=") and spec.allowed is not None and value not in spec.allowed:
            raise _validation(f"invalid {name} value {value!r}", allowedValues=list(spec.allowed))
        return value
    if kind == "number":
        if not _is_number(value):
            raise _validation(f"filter value for {name!r} must be a number")
        return value
    if kind == "bool":
        if not isinstance(value, bool) or op in _ORDERING:
            raise _validation(f"filter value for {name!r} must be a boolean (with == or !=)")
        return value
    if not (isinstance(value, str | bool) or _is_number(value)) or (isinstance(value, bool) and op in _ORDERING):
        raise _validation(f"filter value for {name!r} must be a string, a number or (with == / !=) a boolean")
    return value


def _parse_term(item: dict[str, Any], fields: Mapping[str, FieldSpec]) -> Term:
    keys = set(item)
    if not {"field", "operator"} <= keys or not keys <= {"field", "operator", "value"}:
        raise _validation('each filter term must be {"field": ..., "operator": ..., "value": ...}')
    name, op = item["field"], item["operator"]
    if not isinstance(op, str) or op not in OPERATORS + LEGACY_OPERATORS:
        raise _validation(f"unsupported filter operator {op!r}", supportedOperators=list(OPERATORS))
    path, spec = _resolve(name, fields)
    if op in ("isNull", "isNotNull"):
        return Term(name, path, spec, op, None)
    if "value" not in item:
        raise _validation(f"operator {op!r} needs a value", field=name)
    value = item["value"]
    if op == "in":
        if not isinstance(value, list) or not value:
            raise _validation('operator "in" needs a non-empty list value')
        checked = tuple(_check_value(name, spec, "==", v) for v in value)
        if any(v is None for v in checked):
            raise _validation('operator "in" takes no null values')
        return Term(name, path, spec, "in", checked)
    op = {"eq": "==", "ne": "!="}.get(op, op)
    value = _check_value(name, spec, op, value)
    pattern = _like_regex(value, ignore_case=op != "like") if op in _PATTERNS else None
    return Term(name, path, spec, op, value, pattern)


def _parse_node(raw: Any, fields: Mapping[str, FieldSpec], depth: int) -> Node:
    if depth > _MAX_DEPTH:
        raise _validation(f"filter nested deeper than {_MAX_DEPTH} levels")
    if isinstance(raw, list):
        if not raw:
            raise _validation("a filter list needs at least one element")
        children = tuple(_parse_node(item, fields, depth + 1) for item in raw)
        return children[0] if len(children) == 1 else BoolNode("and", children)
    if not isinstance(raw, dict):
        raise _validation("a filter must be a term, a list or a boolean function")
    if len(raw) == 1 and next(iter(raw)) in ("and", "or", "not"):
        function, items = next(iter(raw.items()))
        if not isinstance(items, list):
            raise _validation(f'"{function}" must hold a list of filters')
        if function == "not" and len(items) != 1:
            raise _validation('"not" must hold exactly one filter')
        if not items:
            raise _validation(f'"{function}" must hold at least one filter')
        return BoolNode(function, tuple(_parse_node(item, fields, depth + 1) for item in items))
    return _parse_term(raw, fields)


def parse_filter(raw: str | None, fields: Mapping[str, FieldSpec]) -> tuple[Node | None, str]:
    """Parse a listing filter: the filter (``None`` for none) and a canonical key (``""`` for none)."""
    if raw is None or not raw.strip():
        return None, ""
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise _validation(f"filter is not valid JSON: {exc}") from None
    if parsed == [] or parsed is None:
        return None, ""
    node = _parse_node(parsed, fields, 0)
    return node, json.dumps(node.key(), sort_keys=True, separators=(",", ":"))


def dict_getter(record: Mapping[str, Any]) -> Getter:
    """A getter over a JSON-like record (dotted paths walk nested objects; missing is null)."""

    def get(path: Sequence[str]) -> Any:
        value: Any = record
        for part in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get
