import pytest

from bot.settings import Settings, SettingsError, setting_names


def test_defaults_are_development_sqlite(tmp_path):
    s = Settings.from_env(environ={"HUINONG_INSTANCE_DIR": str(tmp_path)})
    assert s.env == "development"
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'huinong.db'}"
    assert s.effective_wechat_mode == "plain"
    assert s.problems() == []


def test_env_then_overrides_precedence():
    s = Settings.from_env(
        environ={"HUINONG_NOTICE_DAYS": "7", "HUINONG_REDIS_URL": "redis://x"},
        overrides={"notice_days": 3},
    )
    assert s.notice_days == 3
    assert s.redis_url == "redis://x"


def test_bad_integer_names_the_variable():
    with pytest.raises(SettingsError, match="HUINONG_NOTICE_DAYS must be an integer"):
        Settings.from_env(environ={"HUINONG_NOTICE_DAYS": "five"})


def test_unknown_override_is_refused():
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_env(environ={}, overrides={"HUINONG_NOPE": "1"})


@pytest.mark.parametrize("var", ["HUINONG_SECRET_KEY", "HUINONG_DATA_KEY", "HUINONG_WECHAT_TOKEN"])
def test_production_refuses_placeholder_secrets_naming_the_variable(var):
    env = {
        "HUINONG_ENV": "production",
        "HUINONG_SECRET_KEY": "a-long-real-secret-1",
        "HUINONG_DATA_KEY": "another-long-secret-2",
        "HUINONG_WECHAT_TOKEN": "a-real-token-3",
        "HUINONG_WECHAT_AES_KEY": "a" * 43,
    }
    env[var] = "changethis"
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environ=env).validate()
    assert var in str(info.value)


def test_safe_mode_needs_a_43_char_aes_key():
    s = Settings.from_env(environ={"HUINONG_WECHAT_MODE": "safe", "HUINONG_WECHAT_AES_KEY": "short"})
    assert any("HUINONG_WECHAT_AES_KEY" in p for p in s.problems())


def test_api_base_must_end_with_slash():
    s = Settings.from_env(environ={"HUINONG_WECHAT_API_BASE": "http://127.0.0.1:9/cgi-bin"})
    assert any("HUINONG_WECHAT_API_BASE" in p for p in s.problems())


def test_required_names_exist():
    names = set(setting_names())
    for required in [
        "HUINONG_DATABASE_URL", "HUINONG_REDIS_URL", "HUINONG_SECRET_KEY", "HUINONG_DATA_KEY",
        "HUINONG_INSTANCE_DIR", "HUINONG_CORPUS_DIR", "HUINONG_WECHAT_TOKEN", "HUINONG_WECHAT_APPID",
        "HUINONG_WECHAT_SECRET", "HUINONG_WECHAT_AES_KEY", "HUINONG_WECHAT_API_BASE",
    ]:
        assert required in names
