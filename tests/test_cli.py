import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot.cli import main
from knowledge.config import bundled_corpus_dir

ROOT = Path(__file__).resolve().parent.parent


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


# -- one command line: every command listed, plain-text help, the python -m aliases ----------


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, cmd in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(cmd, click.Group):
            paths += _command_paths(cmd, (*prefix, name))
    return paths


ALL_COMMANDS = _command_paths(main)
REST_MARKUP = re.compile(r"``|:(?:func|mod|class|meth|attr|data|ref|py:\w+):`|^\.\. \w+::", re.MULTILINE)


def test_help_lists_every_command_and_subcommand(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = {line.strip().split("  ")[0] for line in result.output.split("Commands:")[1].splitlines()}
    expected = {" ".join(path) for path in ALL_COMMANDS}
    assert expected <= listed, expected - listed
    for name in ["init-db", "load-demo", "create-staff", "check-config", "build-index", "serve",
                 "wechat-menu", "worker", "knowledge search", "knowledge eval", "knowledge build",
                 "understanding classify", "understanding eval"]:
        assert name in expected


@pytest.mark.parametrize("path", [(), *ALL_COMMANDS], ids=lambda p: " ".join(p) or "huinong")
def test_every_help_is_plain_text_with_a_summary(runner, path):
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert not REST_MARKUP.search(result.output), result.output
    assert "\b" not in result.output
    description = result.output.split("\n\n")[1].strip()
    assert description and not description.startswith("Options:"), result.output


def _understanding_input() -> str:
    rows = [{"id": "a", "text": "房子昨晚塌了一间 娃没地方住"}, {"id": 7, "text": "小额贷款能贷多少"}]
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\nnot json\n{\"id\": 3}\n"


def test_understanding_alias_and_group_give_the_same_bytes(runner):
    stdin = _understanding_input()
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.understanding", "classify", "--jsonl"],
        input=stdin.encode(), capture_output=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1  # the two bad lines
    assert proc.stderr.decode().splitlines() == ["error: line 4: Expecting value: line 1 column 1 (char 0)",
                                                 "error: line 5: 'text'"]
    assert [json.loads(x)["id"] for x in proc.stdout.splitlines()] == ["a", 7]
    result = runner.invoke(main, ["understanding", "classify", "--jsonl"], input=stdin)
    assert result.exit_code == 1
    assert result.stdout_bytes == proc.stdout
    assert result.stderr_bytes == proc.stderr
    missing = runner.invoke(main, ["understanding", "eval", "no-such-file.jsonl"])
    assert missing.exit_code == 2 and "error: cannot read no-such-file.jsonl" in missing.stderr


def test_python_m_aliases_list_their_commands():
    for module, commands in [("knowledge", ["ask", "build", "calibrate", "eval", "search"]),
                             ("handlers.understanding", ["classify", "eval"])]:
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                              cwd=ROOT, timeout=120, check=True)
        assert proc.stdout.startswith(f"Usage: python -m {module} ")
        assert not REST_MARKUP.search(proc.stdout)
        for cmd in commands:
            assert f"\n  {cmd} " in proc.stdout, (module, cmd)


def test_knowledge_alias_and_group_give_the_same_bytes(tmp_path):
    env = {"HUINONG_INSTANCE_DIR": str(tmp_path), "HUINONG_CORPUS_DIR": str(bundled_corpus_dir())}
    rows = [{"id": "a", "question": "小额信贷最多贷多少"}, {"id": 2, "question": "住院能先看病后交钱吗", "region": "神木市"}]
    stdin = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\nnot json\n"
    args = ["search", "--top-k", "5", "--jsonl", "--fake-embedder"]
    proc = subprocess.run([sys.executable, "-m", "knowledge", *args], input=stdin.encode(), capture_output=True,
                          cwd=ROOT, env=dict(os.environ, **env), timeout=300, check=True)
    assert [json.loads(x)["id"] for x in proc.stdout.splitlines()] == ["a", 2]
    assert "line 3: skipped" in proc.stderr.decode()
    result = CliRunner().invoke(main, ["knowledge", *args], input=stdin, env=env)  # the index is built now
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == proc.stdout
