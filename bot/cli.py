"""The ``huinong`` command line.

\b
    huinong init-db            create the tables (safe to run again)
    huinong load-demo          a small demo county with households and staff
    huinong build-index        ingest the policy corpus and build the search index
    huinong serve              run the service with gunicorn
    huinong check-config       show every setting and what is wrong with them
"""

from __future__ import annotations

import importlib
import sys

import click

from .settings import Settings, SettingsError

#: Modules that add commands to the group: each exposes ``commands: list[click.Command]``.
COMMAND_MODULES: tuple[str, ...] = (
    "bot.wechat.commands",
    # "bot.console.commands",
)


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


@click.group(help=__doc__)
@click.version_option(package_name="huinong")
def main() -> None:
    pass


@main.command("init-db")
def init_db_command() -> None:
    """Create the database tables and default deadlines. Running it again changes nothing."""
    from handlers.setup import install_defaults

    services = _services()
    install_defaults(services.ctx)
    click.echo(f"database ready: {services.engine.url.render_as_string(hide_password=True)}")


@main.command("load-demo")
def load_demo_command() -> None:
    """Load a demo county (two townships, villages, households, staff accounts).

    The staff passwords are printed the first time only, and kept in the instance folder
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
@click.option("--role", type=click.Choice(["village", "township", "county", "admin"]), required=True)
@click.option("--region", "region", required=True, help="Region id, or names from the county down: 白河县/城关镇")
@click.option("--name", "display_name", default="", help="Name shown in the console and the audit log")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of a prompt")
def create_staff_command(username: str, role: str, region: str, display_name: str, password_stdin: bool) -> None:
    """Create a staff account for the console."""
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
    """Show every setting (secrets hidden) and exit non-zero when one is wrong."""
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
@click.option("--quiet", is_flag=True, help="No progress bar")
@click.option("--if-needed", is_flag=True, help="Do nothing when the index is already up to date")
def build_index_command(quiet: bool, if_needed: bool) -> None:
    """Ingest the policy corpus and build the lexical and vector index (instance/index).

    The first run also converts the bundled embedding model into the instance folder.
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
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HUINONG_HOST")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="HUINONG_PORT")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="threads per worker (a thread waits while its report commits with others)")
def serve_command(host: str, port: int, workers: int, threads: int) -> None:
    """Run the service with gunicorn (a production WSGI server)."""
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


def register_cli(app) -> None:
    """Make the same commands available as ``flask --app wsgi <command>``."""
    for cmd in main.commands.values():
        app.cli.add_command(cmd)
