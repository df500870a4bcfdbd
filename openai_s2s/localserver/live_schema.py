"""A strict checker for JSON values against small declarative schemas, answering in the
OpenAI API's error terms (code, message, param).

The Live endpoint rejects unknown fields at any level of a session config (observed on the
wire), unlike the openai package's models, which accept extras. The server has no
dependency on the openai package, so the shapes are written out here (:mod:`.live_shapes`)
and a test compares their field names with the package's models.

The messages follow the wording the OpenAI API uses elsewhere ("Unknown parameter: 'x'.",
"Missing required parameter: 'x'."); for Live they are inferred, not checked against the
service. A param is the dotted path from the event's root: ``session.audio.format.rate``,
``session.input[0].role``.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, NamedTuple, Optional, Tuple


class Problem(NamedTuple):
    code: str
    message: str
    param: Optional[str]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _quote(values: Iterable[Any]) -> str:
    shown = [f"'{v}'" for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _kind_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(path: str, expected: str, value: Any) -> Problem:
    return Problem("invalid_type", f"Invalid type for '{path}': expected {expected}, but got "
                   f"{_kind_name(value)} instead.", path)


class Spec:
    """One node of a schema. ``kinds`` are the JSON kinds (python types) it can hold, so a
    union can tell which of its alternatives a value was meant for."""
    kinds: Tuple[type, ...] = ()
    expected = "a value"

    def check(self, value: Any, path: str) -> Optional[Problem]:
        raise NotImplementedError

    def fits(self, value: Any) -> bool:
        return isinstance(value, self.kinds) and not (isinstance(value, bool) and bool not in self.kinds)


class Str(Spec):
    kinds, expected = (str,), "a string"

    def __init__(self, max_length: Optional[int] = None) -> None:
        self.max_length = max_length

    def check(self, value: Any, path: str) -> Optional[Problem]:
        if not self.fits(value):
            return invalid_type(path, self.expected, value)
        if self.max_length is not None and len(value) > self.max_length:
            return Problem("string_above_max_length", f"Invalid '{path}': string too long. Expected a "
                           f"string with maximum length {self.max_length}, but got a string with "
                           f"length {len(value)} instead.", path)
        return None


class Int(Spec):
    kinds, expected = (int,), "an integer"

    def __init__(self, minimum: Optional[int] = None) -> None:
        self.minimum = minimum

    def check(self, value: Any, path: str) -> Optional[Problem]:
        if not self.fits(value):
            return invalid_type(path, self.expected, value)
        if self.minimum is not None and value < self.minimum:
            return Problem("integer_below_min_value", f"Invalid '{path}': integer below minimum value. "
                           f"Expected a value >= {self.minimum}, but got {value} instead.", path)
        return None


class Bool(Spec):
    kinds, expected = (bool,), "a boolean"

    def check(self, value: Any, path: str) -> Optional[Problem]:
        return None if isinstance(value, bool) else invalid_type(path, self.expected, value)


class Const(Spec):
    """One of a few literal values (an enum)."""

    def __init__(self, *values: Any) -> None:
        self.values = values
        self.kinds = tuple({type(v) for v in values})
        self.expected = "one of " + _quote(values)

    def check(self, value: Any, path: str) -> Optional[Problem]:
        if not self.fits(value):
            return invalid_type(path, _kind_name(self.values[0]), value)
        if value not in self.values:
            return Problem("invalid_value", f"Invalid value: '{value}'. Supported values are: "
                           f"{_quote(self.values)}.", path)
        return None


class Opaque(Spec):
    """Any value of the given kinds, not looked into: parts of the config the server does not
    use (decision questions, MCP filters, JSON schemas). Documented as unchecked."""

    def __init__(self, *kinds: type) -> None:
        self.kinds = kinds or (dict, list, str, int, float, bool)
        self.expected = "an object" if kinds == (dict,) else "a value"

    def check(self, value: Any, path: str) -> Optional[Problem]:
        return None if self.fits(value) else invalid_type(path, self.expected, value)


class Nullable(Spec):
    """A required field that may be null (``delegation_id``: "Required, nullable")."""

    def __init__(self, inner: Spec) -> None:
        self.inner = inner
        self.kinds, self.expected = inner.kinds + (type(None),), inner.expected

    def check(self, value: Any, path: str) -> Optional[Problem]:
        return None if value is None else self.inner.check(value, path)


class Obj(Spec):
    """An object with exactly these fields. Fields not in ``required`` may be left out or
    null (every optional field of the package's models is ``Optional[...] = None``).
    ``ref`` names the openai package model it copies (``module:Class`` under openai.types),
    for the test that compares the two."""
    kinds, expected = (dict,), "an object"

    def __init__(self, fields: Dict[str, Spec], required: Iterable[str] = (), ref: str = "") -> None:
        self.fields, self.required, self.ref = fields, frozenset(required), ref

    def check(self, value: Any, path: str) -> Optional[Problem]:
        if not isinstance(value, dict):
            return invalid_type(path, self.expected, value)
        for key in value:
            if key not in self.fields:
                return Problem("unknown_parameter", f"Unknown parameter: '{_join(path, key)}'.", _join(path, key))
        for key in sorted(self.required):
            if key not in value:
                return Problem("missing_required_parameter",
                               f"Missing required parameter: '{_join(path, key)}'.", _join(path, key))
        for key, item in value.items():
            if item is None and key not in self.required:
                continue
            problem = self.fields[key].check(item, _join(path, key))
            if problem is not None:
                return problem
        return None


class ListOf(Spec):
    kinds, expected = (list,), "an array"

    def __init__(self, item: Spec, max_items: Optional[int] = None) -> None:
        self.item, self.max_items = item, max_items

    def check(self, value: Any, path: str) -> Optional[Problem]:
        if not isinstance(value, list):
            return invalid_type(path, self.expected, value)
        if self.max_items is not None and len(value) > self.max_items:
            return Problem("array_above_max_length", f"Invalid '{path}': array too long. Expected an "
                           f"array with maximum length {self.max_items}, but got an array with "
                           f"length {len(value)} instead.", path)
        for i, item in enumerate(value):
            problem = self.item.check(item, f"{path}[{i}]")
            if problem is not None:
                return problem
        return None


class Tagged(Spec):
    """Objects told apart by one field (``type``, or ``role`` for history items); ``default``
    is the choice when that field is left out, where the package allows that."""
    kinds, expected = (dict,), "an object"

    def __init__(self, key: str, choices: Dict[str, Obj], default: Optional[str] = None) -> None:
        self.key, self.choices, self.default = key, choices, default

    def check(self, value: Any, path: str) -> Optional[Problem]:
        if not isinstance(value, dict):
            return invalid_type(path, self.expected, value)
        tag = value.get(self.key, self.default)
        where = _join(path, self.key)
        if tag is None:
            return Problem("missing_required_parameter", f"Missing required parameter: '{where}'.", where)
        if not isinstance(tag, str) or tag not in self.choices:
            return Problem("invalid_value", f"Invalid value: '{tag}'. Supported values are: "
                           f"{_quote(self.choices)}.", where)
        return self.choices[tag].check(value, path)


class AnyOf(Spec):
    """One of several shapes; the first whose JSON kind fits the value judges it (a string
    voice by the names, an object voice by its fields)."""

    def __init__(self, *alternatives: Spec) -> None:
        self.alternatives = alternatives
        self.kinds = tuple(k for a in alternatives for k in a.kinds)
        self.expected = " or ".join(a.expected for a in alternatives)

    def check(self, value: Any, path: str) -> Optional[Problem]:
        for alternative in self.alternatives:
            if alternative.fits(value):
                return alternative.check(value, path)
        return invalid_type(path, self.expected, value)
