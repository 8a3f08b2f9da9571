"""The ``huinong`` command line: one click group for every command of the project.

The service's commands live here; ``bot.wechat.commands`` adds the WeChat ones, and the
``knowledge`` and ``understanding`` groups come from their packages (``knowledge.cli``,
``handlers.understanding.cli``), which ``python -m knowledge`` and ``python -m
handlers.understanding`` run as well. ``huinong --help`` lists every command and subcommand.
"""

from __future__ import annotations

import importlib
import sys

import click

from handlers.understanding.cli import main as understanding_group
from knowledge.cli import main as knowledge_group

from .settings import Settings, SettingsError

#: Modules that add commands to the group: each exposes ``commands: list[click.Command]``.
COMMAND_MODULES: tuple[str, ...] = (
    "bot.wechat.commands",
    # "bot.console.commands",
)

#: Command groups of other packages, registered under these names.
COMMAND_GROUPS: tuple[click.Group, ...] = (knowledge_group, understanding_group)


class _Group(click.Group):
    """Commands in the order they were added, and every subcommand of a group listed too."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        entries: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            entries.append((name, cmd))
            if isinstance(cmd, click.Group):
                sub_ctx = click.Context(cmd, info_name=name, parent=ctx)
                for sub in cmd.list_commands(sub_ctx):
                    sub_cmd = cmd.get_command(sub_ctx, sub)
                    if sub_cmd is not None and not sub_cmd.hidden:
                        entries.append((f"{name} {sub}", sub_cmd))
        if not entries:
            return
        limit = max(45, formatter.width - 6 - max(len(name) for name, _ in entries))
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in entries])


def _settings() -> Settings:
    try:
        return Settings.from_env().validate()
    except SettingsError as exc:
        raise click.ClickException(f"configuration problem: {exc}") from exc


def _services(create_tables: bool = True):
    from .services import build_services

    try:
        return build_services(_settings(), create_tables=create_tables)
    except Exception as exc:
        if isinstance(exc, click.ClickException):
            raise
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="huinong")
def main() -> None:
    """Hardship reporting, policy answers and case triage on WeChat.

    Settings come from HUINONG_* environment variables ("huinong check-config" lists them).
    "huinong COMMAND --help" explains a command, its options and their defaults.

    \b
    First run (what "make run" does):
      huinong init-db && huinong load-demo && huinong build-index --if-needed && huinong serve
    """


@main.command("init-db")
def init_db_command() -> None:
    """Create the tables and default deadlines.

    The database is HUINONG_DATABASE_URL (default: SQLite in the instance folder). Running it
    again changes nothing.
    """
    from handlers.setup import install_defaults

    services = _services()
    install_defaults(services.ctx)
    click.echo(f"database ready: {services.engine.url.render_as_string(hide_password=True)}")


@main.command("load-demo")
def load_demo_command() -> None:
    """Load the demo county with households and staff.

    白河县 with two townships, five villages, households and six staff accounts. The staff
    passwords are printed the first time only, and kept in the instance folder
    (demo-accounts.txt, readable by you alone). Running it again changes nothing.
    """
    from handlers.demo import load_demo

    services = _services()
    result = load_demo(services.ctx)
    path = services.settings.instance_path / "demo-accounts.txt"
    if result.created:
        lines = [f"{a.username}\t{a.password}\t{a.role}\t{a.region}" for a in result.accounts]
        import os

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("username\tpassword\trole\tregion\n" + "\n".join(lines) + "\n")
        click.echo("demo region loaded. Staff accounts (username / password / role / region):")
        for line in lines:
            click.echo("  " + line.replace("\t", "  "))
        click.echo(f"(also written to {path})")
    else:
        click.echo(f"demo region already loaded; the staff accounts are in {path}")


@main.command("create-staff")
@click.argument("username")
@click.option("--role", type=click.Choice(["village", "township", "county", "admin"]), required=True,
              help="What the account may see and do: its level in the region tree, or admin")
@click.option("--region", "region", required=True, help="Region id, or names from the county down: 白河县/城关镇")
@click.option("--name", "display_name", default="", help="Name shown in the console and the audit log")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of a prompt")
def create_staff_command(username: str, role: str, region: str, display_name: str, password_stdin: bool) -> None:
    """Create a staff account for the console.

    The password (at least 8 characters) is prompted twice, or read from standard input
    with --password-stdin.

    \b
    Example:
      huinong create-staff clerk1 --role township --region 白河县/城关镇 --name 张丽
    """
    from handlers.errors import HandlerError
    from handlers.setup import create_staff_account

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.ClickException("the password must have at least 8 characters")
    services = _services()
    try:
        staff = create_staff_account(
            services.ctx, username=username, password=password, role=role, region=region, display_name=display_name
        )
    except HandlerError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"created {staff.username} ({role}) in region {staff.region_id}")


@main.command("check-config")
@click.option("--generate-key", is_flag=True, help="Print a new random value for HUINONG_DATA_KEY and exit")
def check_config_command(generate_key: bool) -> None:
    """Show every setting; exit 1 when one is wrong.

    Lists each HUINONG_* variable with its value (secrets hidden) and what it does, then the problems found
    (on standard error). --generate-key prints a fresh HUINONG_DATA_KEY instead.
    """
    if generate_key:
        from storage.crypto import generate_data_key

        click.echo(generate_data_key())
        return
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    for var, shown, help_text in settings.describe():
        click.echo(f"{var:34} {shown:40} {help_text}")
    problems = settings.problems()
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        raise SystemExit(1)
    click.echo("configuration OK")


@main.command("build-index")
@click.option("--quiet", is_flag=True, help="No progress bar on standard error")
@click.option("--if-needed", is_flag=True, help="Do nothing when the index is already up to date")
def build_index_command(quiet: bool, if_needed: bool) -> None:
    """Ingest the policy corpus, build the search index.

    Builds the BM25 and vector index in the instance folder (index/) from
    HUINONG_CORPUS_DIR (default: the bundled corpus). The first run also converts the
    bundled embedding model into the instance folder (models/); a few minutes in all.
    """
    from knowledge import KnowledgeBase, StaleIndexError
    from knowledge.embedder import EmbedderError, load_embedder

    settings = _settings()
    try:
        embedder = load_embedder(settings.embedding_model or None, settings.instance_path)
    except EmbedderError as exc:
        raise click.ClickException(str(exc)) from exc
    if if_needed:
        try:
            kb = KnowledgeBase.load(settings.index_dir, embedder, corpus_dir=settings.effective_corpus_dir)
            click.echo(f"index up to date: {kb.status().get('passages')} passages in {settings.index_dir}")
            return
        except (StaleIndexError, FileNotFoundError) as exc:
            click.echo(f"building the index: {exc}")
    kb = KnowledgeBase.build(settings.effective_corpus_dir, settings.index_dir, embedder, progress=not quiet)
    status = kb.status()
    click.echo(f"index built: {status.get('documents')} documents, {status.get('passages')} passages → {settings.index_dir}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HUINONG_HOST", show_envvar=True,
              help="Address to listen on (0.0.0.0: every interface)")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="HUINONG_PORT",
              show_envvar=True, help="TCP port to listen on")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="threads per worker (a thread waits while its report commits with others)")
def serve_command(host: str, port: int, workers: int, threads: int) -> None:
    """Run the web service with gunicorn.

    Serves the WeChat endpoint (/wechat), the mini-program API (/api/v1/), the staff
    console (/console/) and /healthz. Run "huinong worker" next to it to deliver the outbox.

    \b
    Example:
      huinong serve --host 0.0.0.0 --port 8000 --workers 4 --threads 8
    """
    settings = _settings()
    from storage.db import database_warnings, make_engine

    engine = make_engine(settings.effective_database_url, sqlite_sync=settings.sqlite_sync)
    for warning in database_warnings(engine):
        click.echo(f"warning: {warning}", err=True)
    engine.dispose()
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self):
            for key, value in {
                "bind": f"{host}:{port}", "workers": workers, "threads": threads,
                "timeout": 30, "graceful_timeout": 10, "accesslog": "-",
            }.items():
                self.cfg.set(key, value)

        def load(self):
            from .app import create_app

            return create_app()

    click.echo(f"serving on http://{host}:{port}/ (console: /console/, health: /healthz)")
    _App().run()


for _module in COMMAND_MODULES:
    for _cmd in importlib.import_module(_module).commands:
        main.add_command(_cmd)
for _group in COMMAND_GROUPS:
    main.add_command(_group)


def register_cli(app) -> None:
    """Make the same commands available as ``flask --app wsgi <command>``."""
    for cmd in main.commands.values():
        app.cli.add_command(cmd)
