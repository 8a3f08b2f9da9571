"""Typed settings: defaults in code → ``HUINONG_*`` environment variables → explicit overrides.

Every key is declared once in ``SETTINGS`` with its default and help text; the README documents
each of them (a test checks it) and ``huinong check-config`` prints them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PREFIX = "HUINONG_"
PLACEHOLDERS = {"", "changethis", "change-me", "secret", "dev", "development", "123456", "token"}


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe; the message names the variable."""


def _field(default: Any, help: str, *, secret: bool = False) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, "secret": secret})


@dataclasses.dataclass
class Settings:
    env: str = _field("development", "development, test or production; production refuses placeholder secrets")
    instance_dir: str = _field("instance", "Folder for the SQLite database, generated keys, the index and the converted model")
    database_url: str = _field("", "SQLAlchemy URL; empty = SQLite file in the instance folder. e.g. postgresql://user@host/db")
    redis_url: str = _field("", "Redis URL for the access token, dialogue state and rate limits; empty = none (database/memory)")
    sqlite_sync: str = _field("normal", "SQLite only: normal (a commit survives the service crashing) or full (also a power cut, fsync per commit)")
    secret_key: str = _field("", "Signs console session cookies; empty in development = generated into the instance folder", secret=True)
    data_key: str = _field("", "Encrypts ID numbers and phones at rest (urlsafe base64 of 32 bytes); empty in development = generated", secret=True)
    corpus_dir: str = _field("", "Policy documents with manifest.json; empty = the corpus shipped with the project")
    embedding_model: str = _field("", "Local sentence-transformers folder; empty = the bundled e5-small, converted on first build")
    wechat_token: str = _field("", "Token set in the official account's server configuration (服务器配置)", secret=True)
    wechat_appid: str = _field("", "Official account AppID")
    wechat_secret: str = _field("", "Official account AppSecret", secret=True)
    wechat_aes_key: str = _field("", "EncodingAESKey (43 characters) for compatible and safe modes", secret=True)
    wechat_mode: str = _field("", "plain, compatible or safe (消息加解密方式); empty = safe when an AES key is set, else plain")
    wechat_api_base: str = _field("https://api.weixin.qq.com/", "Base URL of the WeChat API (must end with /); tests point it at a loopback fake")
    wechat_template_urgent: str = _field("", "Template id for the staff notification of an urgent case")
    wechat_template_outcome: str = _field("", "Template id for telling a villager the outcome of a case")
    mini_appid: str = _field("", "Mini-program AppID (for code2session)")
    mini_secret: str = _field("", "Mini-program AppSecret", secret=True)
    timestamp_window: int = _field(300, "Seconds a signed WeChat request may be old or early before it is refused as a replay")
    max_body_bytes: int = _field(64 * 1024, "Largest WeChat POST body accepted (WeChat's own messages are a few KB)")
    max_upload_bytes: int = _field(5 * 1024 * 1024, "Largest photo accepted by the mini-program API")
    holidays: str = _field("", "Comma-separated public holidays (YYYY-MM-DD) that are not working days")
    extra_workdays: str = _field("", "Comma-separated weekend days that are working days (调休)")
    notice_days: int = _field(5, "Days a 村级公示 stays up before the township may review")
    session_hours: int = _field(12, "Hours a console login or a mini-program session stays valid")
    cookie_secure: bool = _field(True, "Send the console cookie only over HTTPS (set false for plain-HTTP local runs)")
    rate_limit_per_minute: int = _field(60, "Mini-program API requests per user and per IP per minute")
    log_level: str = _field("INFO", "Python logging level")

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = PREFIX + f.name.upper()
            if var in environ:
                values[f.name] = _coerce(f, environ[var], var)
        for key, value in (overrides or {}).items():
            name = key[len(PREFIX):].lower() if key.upper().startswith(PREFIX) else key.lower()
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if name not in fields:
                raise SettingsError(f"unknown setting {key!r}")
            values[name] = _coerce(fields[name], value, PREFIX + name.upper()) if isinstance(value, str) else value
        return cls(**values)

    # --- derived values -------------------------------------------------------------------

    @property
    def instance_path(self) -> Path:
        return Path(self.instance_dir).resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.instance_path / 'huinong.db'}"

    @property
    def effective_corpus_dir(self) -> Path:
        if self.corpus_dir:
            return Path(self.corpus_dir).resolve()
        return Path(__file__).resolve().parent.parent / "knowledge" / "data" / "corpus"

    @property
    def index_dir(self) -> Path:
        return self.instance_path / "index"

    @property
    def effective_wechat_mode(self) -> str:
        return self.wechat_mode or ("safe" if self.wechat_aes_key else "plain")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def problems(self) -> list[str]:
        """Every unsafe or malformed value, each message naming its variable."""
        out: list[str] = []
        if self.env not in {"development", "test", "production"}:
            out.append(f"HUINONG_ENV must be development, test or production, not {self.env!r}")
        if self.sqlite_sync not in {"normal", "full"}:
            out.append(f"HUINONG_SQLITE_SYNC must be normal or full, not {self.sqlite_sync!r}")
        if self.effective_wechat_mode not in {"plain", "compatible", "safe"}:
            out.append("HUINONG_WECHAT_MODE must be plain, compatible or safe")
        if self.effective_wechat_mode != "plain" and len(self.wechat_aes_key) != 43:
            out.append("HUINONG_WECHAT_AES_KEY must be the 43-character EncodingAESKey in compatible and safe modes")
        if not self.wechat_api_base.endswith("/"):
            out.append("HUINONG_WECHAT_API_BASE must end with '/' (wechatpy joins it to endpoints as text)")
        if self.is_production:
            for name in ("secret_key", "data_key", "wechat_token"):
                value = getattr(self, name)
                if value.strip().lower() in PLACEHOLDERS or len(value) < 8:
                    out.append(
                        f"HUINONG_{name.upper()} is empty or a placeholder; set a real secret for production"
                    )
            if self.effective_wechat_mode == "plain":
                out.append("HUINONG_WECHAT_MODE is plain in production: use safe mode (消息加解密方式: 安全模式)")
        return out

    def validate(self) -> Settings:
        problems = self.problems()
        if problems:
            raise SettingsError("; ".join(problems))
        return self

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, shown value, help) for every key, secrets hidden."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = ("(set)" if value else "(empty)") if f.metadata.get("secret") else str(value)
            rows.append((PREFIX + f.name.upper(), shown, f.metadata["help"]))
        return rows


def setting_names() -> list[str]:
    return [PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]


def _coerce(f: dataclasses.Field, raw: Any, var: str) -> Any:
    if f.type in ("int", int):
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{var} must be an integer, not {raw!r}") from exc
    if f.type in ("bool", bool):
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise SettingsError(f"{var} must be true or false, not {raw!r}")
    return str(raw)
