"""``huinong wechat-menu`` and ``huinong worker``."""

from __future__ import annotations

import logging
import signal
import threading

import click

log = logging.getLogger(__name__)


@click.command("wechat-menu")
@click.option("--push", is_flag=True, help="Create the menu through the WeChat API (replaces the current one)")
def wechat_menu_command(push: bool) -> None:
    """Print (or --push) the official account's menu.

    The menu as JSON, with the click keys REPORT / ASK / PROGRESS / CONTACT.
    """
    from .menu import menu_json, push_menu

    click.echo(menu_json())
    if not push:
        return
    from wechatpy.exceptions import WeChatClientException

    from ..cli import _services
    from .outbound import WeChatNotConfigured, make_client

    services = _services()
    try:
        push_menu(make_client(services.settings, services.ctx.kv))
    except WeChatNotConfigured as exc:
        raise click.ClickException(f"{exc}: set them to push the menu") from exc
    except WeChatClientException as exc:
        raise click.ClickException(f"WeChat refused the menu: {exc.errcode} {exc.errmsg}") from exc
    except Exception as exc:  # network errors: say what happened, not a traceback
        raise click.ClickException(f"could not reach the WeChat API: {type(exc).__name__}: {exc}") from exc
    click.echo("menu pushed")


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now and exit")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between rounds")
@click.option("--batch", default=20, show_default=True, type=click.IntRange(1, 500), help="Messages per round")
def worker_command(once: bool, interval: float, batch: int) -> None:
    """Deliver queued WeChat messages, with retries.

    The outbox: customer-service and template messages, with retries and backoff. Run one or more next to the web service; they share the work safely.
    """
    from ..cli import _services
    from .outbound import WeChatNotConfigured
    from .worker import OutboxWorker

    services = _services()
    worker = OutboxWorker(services, batch=batch)
    try:
        worker.client  # noqa: B018 - refuse to start without AppID / AppSecret
    except WeChatNotConfigured as exc:
        raise click.ClickException(f"{exc}: the worker cannot send anything") from exc
    if once:
        stats = worker.drain()
        click.echo(f"outbox: {stats}")
        return
    stop = threading.Event()

    def _stop(signum, frame):
        click.echo("stopping after this round")
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"outbox worker {worker.worker_id}: a round every {interval:g}s (Ctrl-C stops)")
    worker.run_forever(interval=interval, stop=stop)


commands: list[click.Command] = [wechat_menu_command, worker_command]
