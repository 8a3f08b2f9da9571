import pytest
from click.testing import CliRunner

from bot.cli import main


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("HUINONG_INSTANCE_DIR", str(tmp_path / "inst"))
    monkeypatch.setenv("HUINONG_ENV", "test")
    return CliRunner()


def test_help_lists_commands(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for cmd in ["init-db", "load-demo", "create-staff", "check-config", "serve", "build-index"]:
        assert cmd in result.output


def test_init_db_twice_and_demo_once(runner, tmp_path):
    assert runner.invoke(main, ["init-db"]).exit_code == 0
    assert runner.invoke(main, ["init-db"]).exit_code == 0
    first = runner.invoke(main, ["load-demo"])
    assert first.exit_code == 0 and "chengguan" in first.output
    again = runner.invoke(main, ["load-demo"])
    assert again.exit_code == 0 and "already loaded" in again.output
    assert (tmp_path / "inst" / "demo-accounts.txt").stat().st_mode & 0o077 == 0


def test_create_staff_with_stdin_password_and_errors(runner):
    runner.invoke(main, ["load-demo"])
    ok = runner.invoke(main, ["create-staff", "clerk2", "--role", "township", "--region", "白河县/城关镇",
                              "--password-stdin"], input="a-good-password\n")
    assert ok.exit_code == 0, ok.output
    dup = runner.invoke(main, ["create-staff", "clerk2", "--role", "township", "--region", "白河县/城关镇",
                               "--password-stdin"], input="a-good-password\n")
    assert dup.exit_code != 0 and "已存在" in dup.output
    bad_region = runner.invoke(main, ["create-staff", "clerk3", "--role", "village", "--region", "火星村",
                                      "--password-stdin"], input="a-good-password\n")
    assert bad_region.exit_code != 0 and "火星村" in bad_region.output
    short = runner.invoke(main, ["create-staff", "clerk4", "--role", "village", "--region", "1",
                                 "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "8 characters" in short.output


def test_check_config_reports_problems(runner, monkeypatch):
    ok = runner.invoke(main, ["check-config"])
    assert ok.exit_code == 0 and "HUINONG_DATABASE_URL" in ok.output
    monkeypatch.setenv("HUINONG_ENV", "production")
    bad = runner.invoke(main, ["check-config"])
    assert bad.exit_code == 1 and "HUINONG_SECRET_KEY" in bad.output


def test_serve_refuses_bad_port(runner):
    result = runner.invoke(main, ["serve", "--port", "99999"])
    assert result.exit_code != 0 and "99999" in result.output
