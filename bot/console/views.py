"""Blueprint ``/console``: login, the queue, the case page and its actions, export, audit, 一户一码.

Views are thin: they read the request, call a use case of ``handlers`` and render. A refused
action re-renders the page with the use case's Chinese message and its status (400, 403, 404,
409), having changed nothing; a successful one redirects (post/redirect/get), so a reload does
not post twice.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from handlers import queue as queue_uc
from handlers import staff as staff_uc
from handlers import triage as triage_uc
from handlers import triage_texts as T
from handlers.deadlines import CST
from handlers.errors import HandlerError, RateLimited

from . import auth
from .auth import client_ip, login_required, roles_required

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")

LOGIN_ATTEMPTS_PER_IP = 30  # per 5 minutes, on top of the per-account lockout


def _svc():
    return current_app.extensions["huinong"]


def _ctx():
    return _svc().ctx


@bp.before_request
def _csrf_guard():
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not auth.check_csrf():
        actor = auth.current_actor()
        from handlers.staff import record_refusal

        record_refusal(_ctx(), actor, path=request.path, ip=client_ip())
        return render_template("console/message.html", title="请求已失效",
                               message="表单已失效或来源不明（安全校验未通过），本次操作没有执行。请刷新页面后重试。"), 400
    return None


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/console/static/"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.context_processor
def _template_globals():
    return {"csrf_token": auth.csrf_token, "current_actor": auth.current_actor, "queue_url": _queue_url}


def _queue_url(filters: dict[str, str], **changes) -> str:
    """The queue URL for ``filters`` with some values changed (None drops one)."""
    merged = {**filters, **changes}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "")})
    return url_for("console.queue") + ("?" + query if query else "")


@bp.app_template_filter("cn_time")
def _cst(value, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(CST).strftime(fmt)


@bp.app_template_filter("cn_date")
def _md(value) -> str:
    """12月8日 (China time)."""
    if value is None:
        return ""
    local = value.astimezone(CST)
    return f"{local.month}月{local.day}日"


# --- login ----------------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if auth.current_actor() is not None:
            return redirect(url_for("console.queue"))
        return render_template("console/login.html", error=None, username="", next=request.args.get("next", ""))
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    nxt = request.form.get("next", "")
    try:
        hits = _ctx().kv.incr(f"console:login-ip:{client_ip()}", ttl=300)
        if hits > LOGIN_ATTEMPTS_PER_IP:
            raise RateLimited(T.LOGIN_THROTTLED, retry_after=300)
        actor = staff_uc.authenticate(_ctx(), username=username, password=password, ip=client_ip())
    except HandlerError as exc:
        status = exc.status if exc.status != 423 else 403
        return render_template("console/login.html", error=exc.message, username=username[:64], next=nxt), status
    auth.start_session(actor)
    return redirect(auth.safe_next(nxt))


@bp.post("/logout")
def logout():
    actor = auth.current_actor()
    if actor is not None:
        staff_uc.record_logout(_ctx(), actor, ip=client_ip())
    auth.end_session()
    return redirect(url_for("console.login"))


# --- queue -------------------------------------------------------------------------------------------


def _filter_args() -> dict[str, str]:
    return {k: v for k, v in request.args.items()}


@bp.get("/")
@login_required
def queue():
    args = _filter_args()
    try:
        page = queue_uc.queue(_ctx(), g.actor, args)
    except HandlerError as exc:
        return render_template("console/message.html", title="筛选条件有误", message=exc.message,
                               back=url_for("console.queue")), exc.status
    next_url = url_for("console.queue") + "?" + urlencode({**page.filters, "after": page.next_cursor}) \
        if page.next_cursor else None
    return render_template("console/queue.html", page=page, next_url=next_url,
                           can_export_unmasked=g.actor.role in triage_uc.ACTION_ROLES["export_unmasked"],
                           query=urlencode(page.filters))


@bp.post("/export")
@login_required
def export():
    args = {k: v for k, v in request.form.items() if k not in ("csrf_token", "unmasked")}
    unmasked = request.form.get("unmasked") == "1"
    try:
        name, body, _n = queue_uc.export_csv(_ctx(), g.actor, args, unmasked=unmasked, ip=client_ip())
    except HandlerError as exc:
        return render_template("console/message.html", title="无法导出", message=exc.message,
                               back=url_for("console.queue")), exc.status
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# --- case page ---------------------------------------------------------------------------------------


def _render_case(case_id: int, *, reveal: bool = False, error: str | None = None, status: int = 200, form=None):
    try:
        view = triage_uc.case_view(_ctx(), g.actor, case_id, reveal=reveal, ip=client_ip())
    except HandlerError as exc:
        return render_template("console/message.html", title=T.CASE_NOT_FOUND if exc.status == 404 else "无法查看",
                               message=exc.message, back=url_for("console.queue")), exc.status
    return render_template("console/case.html", case=view, error=error, form=form or {},
                           T=T, kinds=_kinds(), monitoring=_monitoring()), status


def _kinds():
    from storage.enums import AssistanceKind

    return [(k.value, k.label) for k in AssistanceKind]


def _monitoring():
    from storage.enums import MonitoringType

    return [(m.value, m.label) for m in MonitoringType]


@bp.get("/cases/<int:case_id>")
@login_required
def case(case_id: int):
    return _render_case(case_id)


@bp.post("/cases/<int:case_id>/reveal")
@login_required
def reveal(case_id: int):
    return _render_case(case_id, reveal=True)


@bp.post("/cases/<int:case_id>/act")
@login_required
def act(case_id: int):
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    form["conditions"] = request.form.getlist("conditions")
    action = form.pop("action", "")
    upload = None
    file = request.files.get("evidence_file")
    settings = _svc().settings
    if file is not None and file.filename:
        data = file.stream.read(settings.max_upload_bytes + 1)
        upload = triage_uc.Upload(filename=file.filename, content_type=file.mimetype or "", data=data)
    try:
        result = triage_uc.act(_ctx(), g.actor, case_id, action, form, upload=upload,
                               upload_root=settings.instance_path, max_upload_bytes=settings.max_upload_bytes,
                               ip=client_ip())
    except HandlerError as exc:
        if exc.status == 404:
            return _render_case(case_id)
        return _render_case(case_id, error=exc.message, status=exc.status, form=form)
    flash(result.message, "ok")
    return redirect(url_for("console.case", case_id=case_id) + "#timeline")


@bp.get("/attachments/<int:attachment_id>")
@login_required
def attachment(attachment_id: int):
    try:
        path, content_type, name = triage_uc.attachment_file(_ctx(), g.actor, attachment_id, ip=client_ip(),
                                                             root=_svc().settings.instance_path)
    except HandlerError as exc:
        return render_template("console/message.html", title="无法查看", message=exc.message,
                               back=url_for("console.queue")), exc.status
    return send_file(path, mimetype=content_type, download_name=name, as_attachment=content_type == "application/pdf")


# --- audit log -------------------------------------------------------------------------------------


@bp.get("/audit")
@roles_required("admin")
def audit_log():
    page = request.args.get("page", "1")
    action = request.args.get("action", "")
    try:
        rows = staff_uc.audit_log(_ctx(), g.actor, action=action or None, page=int(page) if page.isdigit() else 0)
    except HandlerError as exc:
        return render_template("console/message.html", title="无法查看", message=exc.message,
                               back=url_for("console.audit_log")), exc.status
    return render_template("console/audit.html", rows=rows, page=int(page), action=action,
                           actions=sorted(T.AUDIT_LABELS.items()))


# --- 一户一码 ---------------------------------------------------------------------------------------


@bp.get("/villages")
@login_required
def villages():
    from handlers.codes import villages_in_scope

    return render_template("console/villages.html", villages=villages_in_scope(_ctx(), g.actor))


@bp.get("/villages/<int:village_id>/codes")
@login_required
def codes(village_id: int):
    from handlers.codes import household_codes

    from .qr import qr_source, qr_svg_data_uri, renderer_available

    source = qr_source(_svc()) if renderer_available() else None
    try:
        sheet = household_codes(_ctx(), g.actor, village_id, source, ip=client_ip())
    except HandlerError as exc:
        return render_template("console/message.html", title="无法打印户码", message=exc.message,
                               back=url_for("console.villages")), exc.status
    if not renderer_available():
        sheet.error = T.QR_NO_RENDERER
    return render_template("console/codes.html", sheet=sheet, qr=qr_svg_data_uri)
