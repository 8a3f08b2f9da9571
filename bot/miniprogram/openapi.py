"""The OpenAPI 3.1 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

Every request and response schema is generated from the pydantic models of
:mod:`handlers.miniprogram_models`, which also validate every body (:mod:`.inputs`): the document
cannot promise what the code refuses, or the reverse. This module only lays out the operations,
the security scheme and the error responses around them. A test compares its paths and methods
with the routes the application really has.

Why pydantic's own ``models_json_schema`` rather than spectree, flask-openapi3 or apispec:
spectree (3.0) and flask-openapi3 (4.3) read the body with ``request.get_json(silent=True)``, so
malformed JSON, ``NaN`` or a body of the wrong content type would reach validation as ``{}`` or
``None`` instead of the documented ``bad_json``, ``not_object`` and 415 answers, and both answer a
validation error with their own status (422) and body unless overridden; the body would be parsed
twice. spectree's ``Response`` declares one model per status and no response headers (ours
document ``WWW-Authenticate`` on 401 and ``Retry-After`` on 429). flask-openapi3 builds the
document in its own ``OpenAPI`` subclass of ``Flask``, so the application factory would change
for one blueprint. apispec's pydantic plugin does what ``models_json_schema`` does (component
schemas with ``$ref``s), and apispec's path helpers would wrap the same dictionaries as below.
"""

from __future__ import annotations

import copy
import functools

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from handlers import miniprogram_models as M

PREFIX = "/api/v1"
REF_PATTERN = M.REF_PATTERN
IDEMPOTENCY_KEY_PATTERN = M.IDEMPOTENCY_KEY_PATTERN


class _Schema(GenerateJsonSchema):
    """Pydantic's JSON Schema without a generated title on every property."""

    def field_title_should_be_set(self, schema) -> bool:
        return False


@functools.cache
def _components() -> dict:
    _, top = models_json_schema([(m, "validation") for m in (*M.RESPONSES, *M.REQUESTS)],
                                ref_template="#/components/schemas/{model}", schema_generator=_Schema)
    return top["$defs"]


def _ref(model) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


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


def _ok(model, description: str = "OK") -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["ok", "data"],
            "properties": {"ok": {"type": "boolean", "const": True}, "data": _ref(model)},
        }}},
    }


ERROR_CONTENT = {"application/json": {"schema": _ref(M.Error)}}


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


def _query(model) -> list[dict]:
    """The query parameters of ``model``'s fields."""
    schema = model.model_json_schema(schema_generator=_Schema)
    return [{"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
            for name, prop in schema["properties"].items()]


def _json_body(model) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _paths() -> dict:
    return {
        "/login": {"post": {
            "summary": "Log in with the code of wx.login() (code2session); returns our own session token",
            "operationId": "login",
            "requestBody": _json_body(M.LoginRequest),
            "responses": {"200": _ok(M.Login), **_errors(401, 415, 503)},
        }},
        "/logout": {"post": {
            "summary": "Revoke the session token", "operationId": "logout", "security": BEARER,
            "responses": {"200": _ok(M.Logout), **_errors(401)},
        }},
        "/household": {"get": {
            "summary": "My household (for pre-filling the report form); masked ID number and phone",
            "operationId": "getHousehold", "security": BEARER,
            "responses": {"200": _ok(M.HouseholdState), **_errors(401)},
        }},
        "/household/bind": {"post": {
            "summary": "Bind my WeChat to a household: QR-code token, or name + ID last 6 + village (rate-limited)",
            "operationId": "bindHousehold", "security": BEARER,
            "requestBody": _json_body(M.BindRequest),
            "responses": {"200": _ok(M.HouseholdState), **_errors(401, 404, 409, 415)},
        }},
        "/reports": {
            "post": {
                "summary": "一键申报: one call with risk types, description and optional photos",
                "operationId": "submitReport", "security": BEARER, "parameters": [IDEMPOTENCY],
                "requestBody": {"required": False, "content": {
                    "application/json": {"schema": _ref(M.ReportRequest)},
                    "multipart/form-data": {"schema": _ref(M.ReportMultipart)},
                }},
                "responses": {"201": _ok(M.Receipt, "Created (also the replay of the same Idempotency-Key and "
                                                    "body, marked Idempotent-Replayed: true)"),
                              **_errors(401, 404, 409, 413, 415)},
            },
            "get": {
                "summary": "My reports with step, deadline and status in plain words",
                "operationId": "listReports", "security": BEARER, "parameters": _query(M.ReportListQuery),
                "responses": {"200": _ok(M.ReportList), **_errors(401)},
            },
        },
        "/reports/{ref}": {"get": {
            "summary": "One of my reports (another user's is 404)",
            "operationId": "getReport", "security": BEARER, "parameters": [REF],
            "responses": {"200": _ok(M.ReportDetail), **_errors(401, 404)},
        }},
        "/reports/{ref}/photos": {"post": {
            "summary": "Add one photo to one of my reports (wx.uploadFile sends one file per call)",
            "operationId": "addPhoto", "security": BEARER, "parameters": [REF],
            "requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": _ref(M.PhotoMultipart)}}},
            "responses": {"200": _ok(M.Photo, "The same photo was already there"), "201": _ok(M.Photo, "Added"),
                          **_errors(401, 404, 413, 415)},
        }},
        "/ask": {"post": {
            "summary": "A policy question: the quoted clause with its document, section and offsets",
            "operationId": "ask", "security": [{}, {"bearer": []}],
            "requestBody": _json_body(M.AskRequest),
            "responses": {"200": _ok(M.Answer), **_errors(401, 415, 503)},
        }},
        "/policy/topics": {"get": {
            "summary": "Policy topics with example questions for the home screen",
            "operationId": "policyTopics",
            "responses": {"200": _ok(M.Topics), **_errors()},
        }},
        "/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1 document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
    }


@functools.cache
def _document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "huinong mini-program API",
            "version": "1.0.0",
            "description": "JSON API of the mini-program: login by code2session, one-call report (一键申报), "
                           "my reports, policy questions. Success: {\"ok\": true, \"data\": …}; every error: "
                           "{\"ok\": false, \"error\": {\"code\", \"message\" (Chinese), \"field\"}}.",
        },
        "servers": [{"url": PREFIX}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "The token returned by POST /login"}},
            "schemas": _components(),
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


def build() -> dict:
    """The document (a fresh copy each time)."""
    return copy.deepcopy(_document())


@functools.cache
def query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, Flask rule) → the query parameters the operation documents (others are refused)."""
    out = {}
    for path, item in _document()["paths"].items():
        rule = PREFIX + path.replace("{", "<").replace("}", ">")
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            out[(method.upper(), rule)] = frozenset(names)
    return out


def operations() -> set[tuple[str, str]]:
    """(METHOD, full path in Flask's <var> syntax) of every operation in the document."""
    out = set()
    for path, item in _document()["paths"].items():
        flask_path = PREFIX + path.replace("{", "<").replace("}", ">")
        for method in item:
            out.add((method.upper(), flask_path))
    return out
