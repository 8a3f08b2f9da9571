"""The console in a real headless Chromium (Debian's package, driven by Playwright's Python API)
against the real app served by werkzeug on 127.0.0.1: log in, urgent case on top, open it,
advance a step, see the timeline, get refused on another township's case. Screenshots of the
queue and the case page at laptop and phone widths go to test-artifacts/."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.console_support import get_case, report

# Chromium beside the server processes of the multi-process tests, on the same xdist worker as they.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("processes")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}


def _require_browser():
    if not Path(CHROMIUM).exists():
        msg = "chromium is not installed (apt-get install chromium; `make test` does it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true requires the browser tests to run: " + msg)
        pytest.skip(msg)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - it is a dev dependency
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"playwright missing: {exc}")
        pytest.skip(f"playwright missing: {exc}")


@pytest.fixture
def live(services, demo, tmp_path):
    """The app (with the real knowledge base: shipped corpus, hash embedder) on a real HTTP server
    in a thread; yields (base_url, ctx, passwords)."""
    _require_browser()
    from werkzeug.serving import make_server

    from bot.app import create_app
    from knowledge import KnowledgeBase
    from knowledge.config import bundled_corpus_dir
    from knowledge.embedder import HashEmbedder

    services.set_knowledge(KnowledgeBase.build(bundled_corpus_dir(), tmp_path / "index", HashEmbedder(),
                                               progress=False))
    app = create_app(services=services)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", services.ctx, {a.username: a.password for a in demo.accounts}
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            yield b
        finally:
            b.close()


def _populate(ctx):
    now = dt.datetime.now(dt.UTC)
    report(ctx, head="王大山", risks=("education",), description="孩子考上大学，学费凑不齐", now=now - dt.timedelta(days=2))
    report(ctx, head="张建国", risks=("industry_failure",), description="养的猪遭了病，赔了三万多",
           now=now - dt.timedelta(days=25))  # overdue
    report(ctx, head=None, village_name="迎春村", name="刘小红", phone="13700007777", risks=("unemployment",),
           description="在外打工的厂子倒闭了，没活干")
    urgent = report(ctx, head="李秀英", urgent=True, risks=("illness",),
                    description="老伴脑梗住院了，押金交不上，家里就我一个人")
    report(ctx, head="张建国", risks=("housing",), description="下大雨后房子后墙裂了")  # a duplicate
    theirs = report(ctx, head="赵兰芳", risks=("disaster",), description="山洪冲了地")
    return urgent, theirs


def _login(page, base, username, password):
    page.goto(base + "/console/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/console/")


def test_triage_flow_in_a_real_browser(live, browser):
    base, ctx, passwords = live
    urgent, theirs = _populate(ctx)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=LAPTOP, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    _login(page, base, "chengguan", passwords["chengguan"])
    first_row = page.locator("table.queue tbody tr").first
    assert urgent.ref in first_row.inner_text() and "绿色通道" in first_row.inner_text()
    assert page.locator("tr.row-overdue").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "queue-laptop.png"), full_page=True)

    first_row.locator("a.ref").click()
    page.wait_for_url(f"{base}/console/cases/{urgent.id}")
    assert "老伴脑梗住院了" in page.inner_text("body")
    clauses = page.inner_text(".clauses")
    assert "医疗救助" in clauses or "大病保险" in clauses
    assert page.locator("#form-advance").count() == 1
    page.fill("#form-advance textarea[name=note]", "电话联系家属，情况属实，安排村干部今天入户")
    page.click("#form-advance button[type=submit]")
    page.wait_for_url(f"{base}/console/cases/{urgent.id}#timeline")
    assert "已完成“风险预警”" in page.inner_text(".flash")
    timeline = page.inner_text("#timeline")
    assert "完成“风险预警”" in timeline and "电话联系家属" in timeline and "提交申报" in timeline
    assert get_case(ctx, urgent.id).step == "visit"
    assert page.locator(".stepper li.st-current").inner_text().endswith("入户核查")
    page.screenshot(path=str(ARTIFACTS / "case-laptop.png"), full_page=True)

    # 显示: the full ID number only after pressing it
    assert "610929195203150027" not in page.inner_text("body")
    page.click("#reveal")
    assert "610929195203150027" in page.inner_text("#people")

    resp = page.goto(f"{base}/console/cases/{theirs.id}")
    assert resp.status == 404 and "不在您负责的区域内" in page.inner_text("body")
    assert theirs.ref not in page.inner_text("body")

    phone = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, device_scale_factor=2)
    ppage = phone.new_page()
    _login(ppage, base, "chengguan", passwords["chengguan"])
    assert urgent.ref in ppage.locator("table.queue tbody tr").first.inner_text()
    width = ppage.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"queue overflows the phone screen: {width}px"
    ppage.screenshot(path=str(ARTIFACTS / "queue-phone.png"), full_page=True)
    ppage.goto(f"{base}/console/cases/{urgent.id}")
    assert ppage.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    ppage.screenshot(path=str(ARTIFACTS / "case-phone.png"), full_page=True)
    phone.close()
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e or "Uncaught" in e], errors
