"""The OpenAPI 3 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

It is also the source of truth for request validation: :mod:`bot.miniprogram.validate` checks
every JSON (and multipart) body against the request schemas below, so the document cannot
promise what the code refuses, or the reverse. A test compares its paths and methods with
the routes the application really has.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from handlers.miniprogram import IDEMPOTENCY_KEY_MAX, MAX_PHOTOS_PER_CASE
from storage.enums import HouseholdCategory, Outcome, ProcedureStep, RiskType

PREFIX = "/api/v1"

#: Free text: any characters except the C0 controls other than tab, newline and carriage return
#: (PostgreSQL refuses NUL, and nobody types the others).
TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*$"
#: Free text with at least one visible character (a blank value counts as missing).
VISIBLE_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*[^\\s\\u0000-\\u001f][^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*$"
IDEMPOTENCY_KEY_PATTERN = f"^[A-Za-z0-9._:-]{{1,{IDEMPOTENCY_KEY_MAX}}}$"
REF_PATTERN = "^[A-Za-z]{2}[0-9]{8}-[0-9]{4,8}$"

RISK_VALUES = [r.value for r in RiskType] + [r.label for r in RiskType]


def _text(max_len: int, min_len: int = 0, **extra: Any) -> dict:
    pattern = VISIBLE_PATTERN if min_len else TEXT_PATTERN
    schema = {"type": "string", "maxLength": max_len, "pattern": pattern, **extra}
    if min_len:
        schema["minLength"] = min_len
    return schema


def _nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


DT = {"type": "string", "format": "date-time"}

# --- request bodies ------------------------------------------------------------------------

LOGIN_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_-]+$",
                 "description": "The code from wx.login()"},
    },
}

BIND_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "description": "Either the household's QR-code token (一户一码), or the head of household's name, "
                   "the last 6 characters of the ID number and the village (by id or name).",
    "properties": {
        "token": {"type": "string", "minLength": 1, "maxLength": 80, "pattern": "^(hh:)?[A-Za-z0-9_-]+$",
                  "description": "The bind token, with or without the QR scene prefix hh:"},
        "name": _text(32, 1),
        "id_last6": {"type": "string", "pattern": "^[0-9]{5}[0-9Xx]$"},
        "village_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "village": _text(64, 1),
    },
    "anyOf": [
        {"required": ["token"]},
        {"required": ["name", "id_last6", "village_id"]},
        {"required": ["name", "id_last6", "village"]},
    ],
}

_REPORT_FIELDS = {
    "risk_types": {
        "type": "array", "maxItems": len(RiskType),
        "items": {"type": "string", "enum": RISK_VALUES},
        "description": "Risk type codes (or their Chinese labels); empty lets the description decide",
    },
    "description": _text(2000, description="What happened, in the villager's words"),
    "reporter_name": _text(32, description="Required when the user has not bound a household"),
    "reporter_phone": {"type": "string", "pattern": "^1[3-9][0-9]{9}$",
                       "description": "Required when the user has not bound a household"},
    "village_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
                   "description": "Required when the user has not bound a household"},
    "consent": {"type": "boolean",
                "description": "承诺授权 (consent to checks of income and assets); must be true when unbound"},
}

REPORT_REQUEST = {"type": "object", "additionalProperties": False, "properties": _REPORT_FIELDS}

REPORT_MULTIPART = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **_REPORT_FIELDS,
        "photos": {
            "type": "array", "maxItems": MAX_PHOTOS_PER_CASE,
            "items": {"type": "string", "format": "binary"},
            "description": "JPEG, PNG or WebP photos (also accepted under the field name photo)",
        },
    },
}

PHOTO_MULTIPART = {
    "type": "object",
    "additionalProperties": False,
    "required": ["photo"],
    "properties": {"photo": {"type": "string", "format": "binary", "description": "One JPEG, PNG or WebP photo"}},
}

ASK_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["question"],
    "properties": {
        "question": _text(500, 1),
        "region": _nullable(_text(32, description="A place whose documents are preferred, e.g. 白河县; "
                                                  "empty = the asker's own county when bound")),
        "offset": {"type": "integer", "minimum": 0, "maximum": 50, "description": "0, then next_offset for 更多"},
    },
}

#: Request schemas by (method, path template), used by the validator.
REQUESTS = {
    ("POST", "/login"): LOGIN_REQUEST,
    ("POST", "/household/bind"): BIND_REQUEST,
    ("POST", "/reports"): REPORT_REQUEST,
    ("POST", "/ask"): ASK_REQUEST,
}

# --- response bodies -----------------------------------------------------------------------

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "required": ["ok", "error"],
        "additionalProperties": False,
        "properties": {
            "ok": {"type": "boolean", "enum": [False]},
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "description": "Stable, for programs"},
                    "message": {"type": "string", "description": "Chinese, for the villager"},
                    "field": {"type": "string", "nullable": True, "description": "The offending field or header"},
                },
            },
        },
    },
    "Household": {
        "type": "object",
        "required": ["id", "head_name", "village_id", "village", "township", "county", "region", "group_name",
                     "address", "category", "category_label", "members", "id_number_masked", "phone_masked"],
        "properties": {
            "id": {"type": "integer"},
            "head_name": {"type": "string"},
            "village_id": {"type": "integer"},
            "village": {"type": "string"},
            "township": {"type": "string"},
            "county": {"type": "string"},
            "region": {"type": "string", "description": "县乡村, e.g. 白河县城关镇龙湾村"},
            "group_name": {"type": "string"},
            "address": {"type": "string"},
            "category": {"type": "string", "enum": [c.value for c in HouseholdCategory]},
            "category_label": {"type": "string"},
            "members": {"type": "integer"},
            "id_number_masked": {"type": "string", "example": "610929********0018"},
            "phone_masked": {"type": "string", "example": "139****0001"},
        },
    },
    "HouseholdState": {
        "type": "object",
        "required": ["bound", "household"],
        "properties": {
            "bound": {"type": "boolean"},
            "household": {"allOf": [{"$ref": "#/components/schemas/Household"}], "nullable": True},
        },
    },
    "Login": {
        "type": "object",
        "required": ["token", "token_type", "expires_at", "expires_in", "user", "household"],
        "properties": {
            "token": {"type": "string", "description": "Send as Authorization: Bearer <token>"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_at": DT,
            "expires_in": {"type": "integer", "description": "Seconds"},
            "user": {
                "type": "object", "required": ["id", "bound"],
                "properties": {"id": {"type": "integer"}, "bound": {"type": "boolean"}},
            },
            "household": {"allOf": [{"$ref": "#/components/schemas/Household"}], "nullable": True},
        },
    },
    "Logout": {"type": "object", "required": ["revoked"], "properties": {"revoked": {"type": "boolean"}}},
    "Photo": {
        "type": "object",
        "required": ["id", "content_type", "size", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "content_type": {"type": "string", "enum": ["image/jpeg", "image/png", "image/webp"]},
            "size": {"type": "integer"},
            "created_at": DT,
        },
    },
    "Receipt": {
        "type": "object",
        "required": ["ref", "urgent", "due_at", "risk_types", "missing", "message", "photos"],
        "properties": {
            "ref": {"type": "string", "example": "SB20261122-0007"},
            "urgent": {"type": "boolean", "description": "绿色通道: staff are notified at once"},
            "due_at": _nullable(DT),
            "risk_types": {"type": "array", "items": {"type": "string", "enum": [r.value for r in RiskType]}},
            "missing": {"type": "array", "items": {"type": "string", "enum": ["risk_types", "description"]},
                        "description": "What the form may still ask for (optional)"},
            "message": {"type": "string"},
            "photos": {"type": "array", "items": {"$ref": "#/components/schemas/Photo"}},
        },
    },
    "ReportItem": {
        "type": "object",
        "required": ["ref", "created_at", "step", "step_label", "status", "due_at", "overdue", "outcome"],
        "properties": {
            "ref": {"type": "string"},
            "created_at": DT,
            "step": {"type": "string", "enum": [s.value for s in ProcedureStep]},
            "step_label": {"type": "string"},
            "status": {"type": "string", "description": "Plain words for the villager"},
            "due_at": _nullable(DT),
            "overdue": {"type": "boolean"},
            "outcome": {"type": "string", "nullable": True, "enum": [o.value for o in Outcome] + [None]},
        },
    },
    "ReportList": {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/ReportItem"}}},
    },
    "ReportDetail": {
        "type": "object",
        "required": ["ref", "created_at", "channel", "step", "step_label", "status", "due_at", "overdue",
                     "outcome", "outcome_label", "urgent", "risk_types", "description", "photos", "timeline"],
        "properties": {
            "ref": {"type": "string"},
            "created_at": DT,
            "channel": {"type": "string"},
            "step": {"type": "string", "enum": [s.value for s in ProcedureStep]},
            "step_label": {"type": "string"},
            "status": {"type": "string"},
            "due_at": _nullable(DT),
            "overdue": {"type": "boolean"},
            "outcome": {"type": "string", "nullable": True},
            "outcome_label": {"type": "string", "nullable": True},
            "urgent": {"type": "boolean"},
            "risk_types": {
                "type": "array",
                "items": {"type": "object", "required": ["code", "label"],
                          "properties": {"code": {"type": "string"}, "label": {"type": "string"}}},
            },
            "description": {"type": "string"},
            "photos": {"type": "array", "items": {"$ref": "#/components/schemas/Photo"}},
            "timeline": {
                "type": "array",
                "items": {
                    "type": "object", "required": ["at", "action", "step", "step_label"],
                    "properties": {"at": DT, "action": {"type": "string"},
                                   "step": {"type": "string", "nullable": True},
                                   "step_label": {"type": "string", "nullable": True}},
                },
            },
        },
    },
    "Passage": {
        "type": "object",
        "required": ["doc", "title", "issuer", "date", "doc_no", "section", "text", "start", "end", "score",
                     "region", "display"],
        "properties": {
            "doc": {"type": "string", "description": "Corpus file name"},
            "title": {"type": "string"},
            "issuer": {"type": "string"},
            "date": {"type": "string"},
            "doc_no": {"type": "string", "nullable": True},
            "section": {"type": "string", "description": "Section path, e.g. 第三章 第一节 （二）"},
            "text": {"type": "string", "description": "The clause, word for word"},
            "start": {"type": "integer", "description": "Character offset in the original file"},
            "end": {"type": "integer"},
            "score": {"type": "number"},
            "region": {
                "type": "object", "description": "The document's region",
                "properties": {level: {"type": "string", "nullable": True} for level in ("province", "city", "county")},
            },
            "display": {"type": "string", "description": "Repaired reading text (a table row with its header)"},
        },
    },
    "Answer": {
        "type": "object",
        "required": ["text", "answerable", "region", "passages", "next_offset"],
        "properties": {
            "text": {"type": "string", "description": "WeChat-ready answer with the citation"},
            "answerable": {"type": "boolean", "description": "False: the documents do not answer this"},
            "region": {"type": "string", "nullable": True},
            "passages": {"type": "array", "items": {"$ref": "#/components/schemas/Passage"}},
            "next_offset": {"type": "integer", "nullable": True},
        },
    },
    "Topics": {
        "type": "object", "required": ["topics"],
        "properties": {
            "topics": {
                "type": "array",
                "items": {
                    "type": "object", "required": ["code", "title", "description", "examples"],
                    "properties": {"code": {"type": "string"}, "title": {"type": "string"},
                                   "description": {"type": "string"},
                                   "examples": {"type": "array", "items": {"type": "string"}}},
                },
            },
        },
    },
}

_ERROR_TEXT = {
    400: "Malformed or invalid input (the field is named)",
    401: "Missing, forged, revoked or expired session token, or an invalid login code",
    404: "Not found (another user's report is 'not found' too)",
    409: "Conflict (an Idempotency-Key reused with another body; a WeChat already bound to another household)",
    405: "Method not allowed on this path",
    413: "A photo or the whole request is too large",
    415: "Not a JPEG, PNG or WebP image, or an unsupported request content type",
    429: "Too many requests; see Retry-After",
    503: "A dependency (WeChat, the policy index) is unavailable",
}


def _ok(ref: str, description: str = "OK") -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["ok", "data"],
            "properties": {"ok": {"type": "boolean", "enum": [True]}, "data": {"$ref": f"#/components/schemas/{ref}"}},
        }}},
    }


ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _errors(*statuses: int) -> dict:
    """The error responses of an operation: 400, 405 and 429 everywhere, plus ``statuses``."""
    out: dict[str, dict] = {}
    for status in sorted({400, 405, 429, *statuses}):
        if status == 429:
            out["429"] = {"$ref": "#/components/responses/RateLimited"}
        elif status == 401:
            out["401"] = {"$ref": "#/components/responses/Unauthorized"}
        else:
            out[str(status)] = {"description": _ERROR_TEXT[status], "content": ERROR_CONTENT}
    return out


BEARER = [{"bearer": []}]
IDEMPOTENCY = {
    "name": "Idempotency-Key", "in": "header", "required": True,
    "description": "A random key per report (e.g. a UUID). Sending the same body again with it returns the first "
                   "response; another body with it is 409.",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
}
REF = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string", "pattern": REF_PATTERN}}


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def build() -> dict:
    """The document (a fresh copy each time)."""
    paths = {
        "/login": {"post": {
            "summary": "Log in with the code of wx.login() (code2session); returns our own session token",
            "operationId": "login",
            "requestBody": _json_body(LOGIN_REQUEST),
            "responses": {"200": _ok("Login"), **_errors(401, 415, 503)},
        }},
        "/logout": {"post": {
            "summary": "Revoke the session token", "operationId": "logout", "security": BEARER,
            "responses": {"200": _ok("Logout"), **_errors(401)},
        }},
        "/household": {"get": {
            "summary": "My household (for pre-filling the report form); masked ID number and phone",
            "operationId": "getHousehold", "security": BEARER,
            "responses": {"200": _ok("HouseholdState"), **_errors(401)},
        }},
        "/household/bind": {"post": {
            "summary": "Bind my WeChat to a household: QR-code token, or name + ID last 6 + village (rate-limited)",
            "operationId": "bindHousehold", "security": BEARER,
            "requestBody": _json_body(BIND_REQUEST),
            "responses": {"200": _ok("HouseholdState"), **_errors(401, 404, 409, 415)},
        }},
        "/reports": {
            "post": {
                "summary": "一键申报: one call with risk types, description and optional photos",
                "operationId": "submitReport", "security": BEARER, "parameters": [IDEMPOTENCY],
                "requestBody": {"required": False, "content": {
                    "application/json": {"schema": REPORT_REQUEST},
                    "multipart/form-data": {"schema": REPORT_MULTIPART},
                }},
                "responses": {"201": _ok("Receipt", "Created (also the replay of the same Idempotency-Key and body, "
                                                    "marked Idempotent-Replayed: true)"),
                              **_errors(401, 404, 409, 413, 415)},
            },
            "get": {
                "summary": "My reports with step, deadline and status in plain words",
                "operationId": "listReports", "security": BEARER,
                "parameters": [{"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}}],
                "responses": {"200": _ok("ReportList"), **_errors(401)},
            },
        },
        "/reports/{ref}": {"get": {
            "summary": "One of my reports (another user's is 404)",
            "operationId": "getReport", "security": BEARER, "parameters": [REF],
            "responses": {"200": _ok("ReportDetail"), **_errors(401, 404)},
        }},
        "/reports/{ref}/photos": {"post": {
            "summary": "Add one photo to one of my reports (wx.uploadFile sends one file per call)",
            "operationId": "addPhoto", "security": BEARER, "parameters": [REF],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": PHOTO_MULTIPART}}},
            "responses": {"200": _ok("Photo", "The same photo was already there"), "201": _ok("Photo", "Added"),
                          **_errors(401, 404, 413, 415)},
        }},
        "/ask": {"post": {
            "summary": "A policy question: the quoted clause with its document, section and offsets",
            "operationId": "ask", "security": [{}, {"bearer": []}],
            "requestBody": _json_body(ASK_REQUEST),
            "responses": {"200": _ok("Answer"), **_errors(401, 415, 503)},
        }},
        "/policy/topics": {"get": {
            "summary": "Policy topics with example questions for the home screen",
            "operationId": "policyTopics",
            "responses": {"200": _ok("Topics"), **_errors()},
        }},
        "/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3 document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
    }
    doc = {
        "openapi": "3.0.3",
        "info": {
            "title": "huinong mini-program API",
            "version": "1.0.0",
            "description": "JSON API of the mini-program: login by code2session, one-call report (一键申报), "
                           "my reports, policy questions. Success: {\"ok\": true, \"data\": …}; every error: "
                           "{\"ok\": false, \"error\": {\"code\", \"message\" (Chinese), \"field\"}}.",
        },
        "servers": [{"url": PREFIX}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "The token returned by POST /login"}},
            "schemas": copy.deepcopy(SCHEMAS),
            "responses": {
                "Error": {"description": "Error", "content": ERROR_CONTENT},
                "Unauthorized": {
                    "description": _ERROR_TEXT[401], "content": ERROR_CONTENT,
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                },
                "RateLimited": {
                    "description": _ERROR_TEXT[429], "content": ERROR_CONTENT,
                    "headers": {"Retry-After": {"required": True,
                                                "schema": {"type": "integer", "minimum": 1},
                                                "description": "Seconds to wait"}},
                },
            },
        },
    }
    return copy.deepcopy(doc)


@functools.cache
def query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, Flask rule) → the query parameters the operation documents (others are refused)."""
    out = {}
    for path, item in build()["paths"].items():
        rule = PREFIX + path.replace("{", "<").replace("}", ">")
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            out[(method.upper(), rule)] = frozenset(names)
    return out


def operations() -> set[tuple[str, str]]:
    """(METHOD, full path in Flask's <var> syntax) of every operation in the document."""
    out = set()
    for path, item in build()["paths"].items():
        flask_path = PREFIX + path.replace("{", "<").replace("}", ">")
        for method in item:
            out.add((method.upper(), flask_path))
    return out
