"""The README documents every setting and every CLI command (so neither can drift)."""

from pathlib import Path

from bot.cli import main
from bot.settings import setting_names

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented():
    missing = [n for n in setting_names() if f"`{n}`" not in README]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_cli_command_is_documented():
    missing = [c for c in main.commands if f"huinong {c}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"
