"""Reading a request of ``/api/v1``: JSON and multipart bodies, the Idempotency-Key header.

Bodies are validated by the pydantic models of :mod:`handlers.miniprogram_models` (the same
models the OpenAPI document is generated from). The first problem found becomes the one error
shape, naming the field in Chinese with the codes the API has always used: ``unknown_field``,
``required``, ``type``, ``choice``, ``too_short``, ``too_long``, ``pattern``, ``range``,
``too_many``, ``not_object``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, TypeVar

import pydantic
from flask import request

from handlers import miniprogram as mp
from handlers import miniprogram_models as M
from handlers import miniprogram_texts as T
from handlers.errors import ValidationError

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

_IDEM_RE = re.compile(M.IDEMPOTENCY_KEY_PATTERN)
_SPLIT = re.compile(r"[,，、\s]+")

#: pydantic's error types → (our code, the JSON type a type error names).
_TYPE_ERRORS = {
    "string_type": "string", "int_type": "integer", "bool_type": "boolean", "list_type": "array",
    "dict_type": "object", "model_type": "object", "float_type": "number",
}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


def _field_name(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _order(data: Any):
    """Unknown fields first, then missing ones, then the choice of a way, then values in body order."""
    keys = list(data) if isinstance(data, dict) else []

    def key(err: dict) -> tuple[int, int]:
        rank = {"extra_forbidden": 0, "missing": 1, "one_way": 2}.get(err["type"], 3)
        first = err["loc"][0] if err["loc"] else None
        return rank, keys.index(first) if first in keys else len(keys)

    return key


@functools.cache
def _min_lengths(model: type[pydantic.BaseModel]) -> dict[str, int]:
    """The ``minLength`` of each string field of ``model``, from its JSON Schema."""
    out = {}
    for name, prop in model.model_json_schema().get("properties", {}).items():
        for alt in [prop, *prop.get("anyOf", [])]:
            if "minLength" in alt:
                out[name] = alt["minLength"]
    return out


def problem(exc: pydantic.ValidationError, data: Any, model: type[pydantic.BaseModel]) -> ValidationError:
    """The first error of ``exc`` as the API's ``ValidationError`` (Chinese message, field, code)."""
    err = sorted(exc.errors(include_url=False), key=_order(data))[0]
    kind, loc, ctx, value = err["type"], err["loc"], err.get("ctx") or {}, err.get("input")
    if not loc and kind in _TYPE_ERRORS:
        return ValidationError(T.BODY_NOT_OBJECT, code="not_object")
    if kind == "one_way":
        return ValidationError(T.BIND_NEEDS_ONE_WAY, field=ctx["field"], code="required")
    field = _field_name(loc)
    if kind == "extra_forbidden":
        field = _field_name(loc[:-1] + (str(loc[-1])[:40],))
        return ValidationError(T.FIELD_UNKNOWN.format(field=field), field=field, code="unknown_field")
    if kind == "missing":
        return ValidationError(T.FIELD_MISSING.format(field=field), field=field, code="required")
    if kind in _TYPE_ERRORS:
        expected = T.TYPE_NAMES.get(_TYPE_ERRORS[kind], _TYPE_ERRORS[kind])
        return ValidationError(T.FIELD_TYPE.format(field=field, expected=expected), field=field, code="type")
    if kind in {"literal_error", "enum"}:
        return ValidationError(T.FIELD_CHOICE.format(field=field), field=field, code="choice")
    blank = isinstance(value, str) and not value.strip()
    if kind == "string_too_short" or (blank and len(loc) == 1 and _min_lengths(model).get(loc[0]) == 1):
        n = ctx.get("min_length", 1)
        # A blank value where one visible character is required counts as missing.
        code = "required" if n == 1 else "too_short"
        return ValidationError(T.FIELD_TOO_SHORT.format(field=field, n=n), field=field, code=code)
    if kind == "string_too_long":
        return ValidationError(T.FIELD_TOO_LONG.format(field=field, n=ctx["max_length"]), field=field,
                               code="too_long")
    if kind == "too_long":
        return ValidationError(T.FIELD_TOO_MANY.format(field=field, n=ctx["max_length"]), field=field,
                               code="too_many")
    if kind in _RANGE_ERRORS:
        return ValidationError(T.FIELD_RANGE.format(field=field), field=field, code="range")
    # string_pattern_mismatch, string_unicode (a lone surrogate) and anything else about the form
    return ValidationError(T.FIELD_PATTERN.format(field=field), field=field, code="pattern")


def check(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise problem(exc, data, model) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, model: type[ModelT]) -> ModelT:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationError(T.BODY_NOT_JSON, code="bad_json") from exc
    return check(model, data)


def json_body(model: type[ModelT]) -> ModelT:
    """The request's JSON object, validated by ``model``."""
    if request.mimetype != "application/json":
        raise mp.UnsupportedMediaType("请以 JSON 格式（application/json）提交", code="unsupported_media_type")
    return parse_json(request.get_data(cache=True), model)


def idempotency_key() -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise ValidationError(T.IDEMPOTENCY_KEY_MISSING, field="Idempotency-Key", code="required")
    key = key.strip()
    if not _IDEM_RE.match(key):
        raise ValidationError(T.IDEMPOTENCY_KEY_INVALID, field="Idempotency-Key", code="pattern")
    return key


def list_limit() -> int:
    """``?limit=`` of ``GET /reports``: digits only, within the bounds of ``ReportListQuery``."""
    raw = request.args.get("limit")
    if raw is None:
        return M.ReportListQuery().limit
    if raw.isascii() and raw.isdigit():
        try:
            return M.ReportListQuery(limit=int(raw)).limit
        except pydantic.ValidationError:
            pass
    raise ValidationError(T.FIELD_RANGE.format(field="limit"), field="limit", code="range")


# --- multipart -----------------------------------------------------------------------------


def _unknown(name: str | None) -> ValidationError:
    name = (name or "")[:40]  # a part whose name the parser could not read is unknown too
    return ValidationError(T.FIELD_UNKNOWN.format(field=name), field=name, code="unknown_field")


def read_upload(fs, *, field: str, max_bytes: int) -> mp.Upload:
    data = fs.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise mp.PayloadTooLarge(T.PHOTO_TOO_LARGE.format(mb=mp._mb(max_bytes)), field=field)
    return mp.Upload(filename=(fs.filename or "")[:255], data=data)


def multipart():
    """The parsed form and files; a body that is not multipart at all is refused, not taken as empty."""
    form, files = request.form, request.files
    if not form and not files:
        boundary = request.mimetype_params.get("boundary", "")
        closing = len(f"--{boundary}--") + 4
        if not boundary or (request.content_length or 0) > closing:
            raise ValidationError("上传内容格式不正确（multipart/form-data）", code="bad_multipart")
    return form, files


def _single(form, name: str) -> str:
    values = form.getlist(name)
    if len(values) > 1:
        raise ValidationError(T.FIELD_TYPE.format(field=name, expected=T.TYPE_NAMES["string"]), field=name,
                              code="type")
    return values[0]


def multipart_report(max_bytes: int) -> tuple[M.ReportRequest, list[mp.Upload]]:
    """A multipart report (what wx.uploadFile sends: text fields in formData plus the photo)."""
    form, files = multipart()
    allowed = set(M.ReportMultipart.model_fields) | {"photo"}
    for name in list(form.keys()) + list(files.keys()):
        if name not in allowed:
            raise _unknown(name)
    data: dict = {}
    for name in ("photos", "photo"):
        if name in form:
            raise ValidationError(T.FIELD_TYPE.format(field=name, expected="图片文件"), field=name, code="type")
    if "risk_types" in form:
        data["risk_types"] = [p for v in form.getlist("risk_types") for p in _SPLIT.split(v) if p]
    for name in ("description", "reporter_name", "reporter_phone"):
        if name in form:
            data[name] = _single(form, name)
    if "village_id" in form:
        raw = _single(form, "village_id").strip()
        if not raw.isascii() or not raw.isdigit():
            raise ValidationError(T.FIELD_TYPE.format(field="village_id", expected=T.TYPE_NAMES["integer"]),
                                  field="village_id", code="type")
        data["village_id"] = int(raw)
    if "consent" in form:
        raw = _single(form, "consent").strip().lower()
        if raw not in {"true", "false", "1", "0"}:
            raise ValidationError(T.FIELD_TYPE.format(field="consent", expected=T.TYPE_NAMES["boolean"]),
                                  field="consent", code="type")
        data["consent"] = raw in {"true", "1"}
    report = check(M.ReportRequest, data)
    uploads = [
        read_upload(fs, field="photos", max_bytes=max_bytes)
        for name in ("photos", "photo") for fs in files.getlist(name)
    ]
    # An empty file part without a name is what a form sends when no file was chosen.
    uploads = [u for u in uploads if u.data or u.filename]
    return report, uploads


def report_input(max_bytes: int) -> tuple[M.ReportRequest, list[mp.Upload]]:
    if request.mimetype == "multipart/form-data":
        return multipart_report(max_bytes)
    raw = request.get_data(cache=True)
    if request.mimetype == "application/json":
        return parse_json(raw, M.ReportRequest), []
    if not raw and not request.mimetype:
        return M.ReportRequest(), []  # 一键申报 with nothing typed: the household's data is enough
    raise mp.UnsupportedMediaType("请以 JSON 或 multipart/form-data 格式提交", code="unsupported_media_type")


def single_photo(max_bytes: int) -> mp.Upload:
    """The one photo of ``POST /reports/{ref}/photos``."""
    if request.mimetype != "multipart/form-data":
        raise mp.UnsupportedMediaType("请以 multipart/form-data 格式上传照片", code="unsupported_media_type")
    form, files = multipart()
    for name in list(form.keys()) + list(files.keys()):
        if name not in M.PhotoMultipart.model_fields:
            raise _unknown(name)
    photos = files.getlist("photo")
    if len(photos) != 1:
        code = "required" if not photos else "too_many"
        msg = T.FIELD_MISSING.format(field="photo") if not photos else T.FIELD_TOO_MANY.format(field="photo", n=1)
        raise ValidationError(msg, field="photo", code=code)
    return read_upload(photos[0], field="photo", max_bytes=max_bytes)
