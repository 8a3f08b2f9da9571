"""The OpenAPI document matches the real routes (paths and methods, both ways) and is valid."""

from __future__ import annotations

from bot.miniprogram import openapi
from tests.api_helpers import assert_api_error


def _routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(openapi.PREFIX + "/"):
            continue
        path = rule.rule
        for arg in rule.arguments:  # <ref> and <string:ref> both become <ref>
            path = path.replace(f"<string:{arg}>", f"<{arg}>")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method, path))
    return out


def test_every_route_is_documented_and_every_documented_operation_exists(app):
    routes = _routes(app)
    documented = openapi.operations()
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations the application does not have"
    assert len(routes) >= 11


def test_the_document_is_served_and_is_valid_openapi(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.get_json()
    assert doc["openapi"].startswith("3.") and doc["servers"] == [{"url": "/api/v1"}]
    # every $ref resolves
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        target = doc
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


def test_every_operation_documents_the_error_shape(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path == "/openapi.json":
                continue
            assert "400" in op["responses"] and "429" in op["responses"], (method, path)
            assert any(s.startswith("2") for s in op["responses"]), (method, path)


def test_the_error_shape_helper_rejects_other_shapes(client):
    import pytest

    r = client.get("/api/v1/policy/topics")
    with pytest.raises(AssertionError):
        assert_api_error(r, r.status_code)
