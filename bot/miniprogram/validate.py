"""Strict validation of request bodies against the OpenAPI request schemas.

A small interpreter for the subset of JSON Schema those schemas use (type, properties, required,
additionalProperties, anyOf of required-lists, enum, string length and pattern, integer range,
array items and size, nullable). The first problem found raises ``ValidationError`` naming the
field, in Chinese. Nothing is coerced: ``"3"`` is not an integer and ``1`` is not a boolean.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from handlers import miniprogram_texts as T
from handlers.errors import ValidationError


@lru_cache(maxsize=64)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    return True


def _fail(message: str, field: str, code: str = "invalid") -> None:
    raise ValidationError(message, field=field or None, code=code)


def check(value: Any, schema: dict, field: str = "") -> Any:
    """Validate ``value``; returns it with integral floats turned into ints."""
    if value is None:
        if schema.get("nullable"):
            return None
        if not field:
            _fail(T.BODY_NOT_OBJECT, "", "not_object")
        _fail(T.FIELD_TYPE.format(field=field, expected=T.TYPE_NAMES.get(schema.get("type"), "")), field, "type")
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        if not field:
            _fail(T.BODY_NOT_OBJECT, "", "not_object")
        _fail(T.FIELD_TYPE.format(field=field, expected=T.TYPE_NAMES.get(expected, expected)), field, "type")
    if expected == "integer" and isinstance(value, float):
        value = int(value)
    if "enum" in schema and value not in schema["enum"]:
        _fail(T.FIELD_CHOICE.format(field=field), field, "choice")
    if isinstance(value, str):
        # A blank value where one visible character is required counts as missing.
        if "minLength" in schema and (len(value) < schema["minLength"] or (schema["minLength"] == 1 and not value.strip())):
            code = "required" if schema["minLength"] == 1 else "too_short"
            _fail(T.FIELD_TOO_SHORT.format(field=field, n=schema["minLength"]), field, code)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            _fail(T.FIELD_TOO_LONG.format(field=field, n=schema["maxLength"]), field, "too_long")
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            _fail(T.FIELD_PATTERN.format(field=field), field, "pattern")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _fail(T.FIELD_PATTERN.format(field=field), field, "pattern")
    if isinstance(value, int) and not isinstance(value, bool):
        if ("minimum" in schema and value < schema["minimum"]) or ("maximum" in schema and value > schema["maximum"]):
            _fail(T.FIELD_RANGE.format(field=field), field, "range")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            _fail(T.FIELD_TOO_MANY.format(field=field, n=schema["maxItems"]), field, "too_many")
        items = schema.get("items")
        if items:
            value = [check(v, items, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        value = _check_object(value, schema, field)
    return value


def _check_object(value: dict, schema: dict, field: str) -> dict:
    props = schema.get("properties", {})
    prefix = f"{field}." if field else ""
    if schema.get("additionalProperties") is False:
        for key in value:
            if key not in props:
                _fail(T.FIELD_UNKNOWN.format(field=prefix + str(key)[:40]), prefix + str(key)[:40], "unknown_field")
    for key in schema.get("required", []):
        if key not in value:
            _fail(T.FIELD_MISSING.format(field=prefix + key), prefix + key, "required")
    alternatives = schema.get("anyOf")
    if alternatives and not any(all(k in value for k in alt.get("required", [])) for alt in alternatives):
        # Name what is missing from the alternative the client came closest to.
        nearest = max(alternatives, key=lambda alt: sum(k in value for k in alt.get("required", [])))
        first_missing = next(k for k in nearest["required"] if k not in value)
        raise ValidationError(T.BIND_NEEDS_ONE_WAY, field=prefix + first_missing, code="required")
    return {key: check(v, props[key], prefix + key) if key in props else v for key, v in value.items()}
