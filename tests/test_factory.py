from bot.app import create_app


def test_factory_builds_with_overrides(tmp_path):
    app = create_app({"instance_dir": str(tmp_path / "inst"), "env": "test"})
    assert app.extensions["huinong"].settings.env == "test"
    assert (tmp_path / "inst" / "huinong.db").exists()


def test_healthz_reports_database_and_missing_index(client):
    resp = client.get("/healthz")
    body = resp.get_json()
    assert body["database"] == {"ok": True, "backend": "sqlite"}
    # No index was built in this test instance: the health check says so instead of crashing.
    assert body["index"]["ok"] is False
    assert resp.status_code == 503


def test_unknown_api_route_gets_canonical_json_error(client):
    resp = client.get("/api/v1/does-not-exist")
    assert resp.status_code == 404
    body = resp.get_json()
    assert body["ok"] is False and body["error"]["code"] == "not_found"
    assert body["error"]["message"]


def test_unknown_page_is_a_chinese_page_without_trace(client):
    resp = client.get("/nope")
    assert resp.status_code == 404
    text = resp.get_data(as_text=True)
    assert "没有找到" in text and "Traceback" not in text


def test_logs_mask_personal_data(app, caplog):
    import logging

    from handlers.pii import PiiMaskingFilter

    root = logging.getLogger()
    assert all(any(isinstance(f, PiiMaskingFilter) for f in h.filters) for h in root.handlers)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "电话 %s", ("13912345678",), None)
    for h in root.handlers:
        for f in h.filters:
            f.filter(record)
    assert "13912345678" not in record.getMessage()


def test_what_lives_as_long_as_the_process_is_frozen_once(monkeypatch):
    """After the model loads, the collector stops walking its objects (a full collection took
    0.22 s with the model loaded); done once per process."""
    import gc

    from bot import services

    monkeypatch.setattr(services, "_frozen", False)
    try:
        services._freeze_long_lived()
        frozen = gc.get_freeze_count()
        assert frozen > 1000
        services._freeze_long_lived()  # the second call changes nothing
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
