"""Settings: defaults from the spec, and one clear error naming the variable for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import ConfigError, Settings


def test_defaults_match_the_spec() -> None:
    s = Settings.from_env({}, is_tty=False)
    assert s.database_url is None
    assert s.data_dir == Path(".bunsync")
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.signature_tolerance_s == 300
    assert s.bunjang_base_url == "https://openapi.bunjang.co.kr"
    assert (s.reconcile_interval_s, s.reconcile_overlap_s, s.reconcile_lookback_s) == (300, 600, 259200)
    assert (s.fetch_concurrency, s.fetch_max_attempts) == (4, 12)
    assert s.log_format == "json"
    assert Settings.from_env({}, is_tty=True).log_format == "console"


def test_secrets_are_a_comma_separated_list() -> None:
    s = Settings.from_env({"BUNSYNC_WEBHOOK_SECRETS": "old, new"}, is_tty=False)
    assert s.webhook_secrets == ("old", "new")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BUNSYNC_PORT", "http"),
        ("BUNSYNC_PORT", "70000"),
        ("BUNSYNC_SIGNATURE_TOLERANCE_S", "-1"),
        ("BUNSYNC_FETCH_CONCURRENCY", "0"),
        ("BUNSYNC_RECONCILE_OVERLAP_S", "ten"),
        ("BUNSYNC_DATABASE_URL", "mysql://x"),
        ("BUNSYNC_BUNJANG_BASE_URL", "openapi.bunjang.co.kr"),
        ("BUNSYNC_BUNJANG_SECRET_KEY", "not base64!"),
        ("BUNSYNC_LOG_FORMAT", "xml"),
        ("BUNSYNC_WEBHOOK_SECRETS", "a,,b"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({variable: value}, is_tty=False)
    assert err.value.variable == variable
    assert str(err.value).startswith(f"{variable}: ")
    assert "\n" not in str(err.value)
    if "SECRET" in variable:
        assert value not in str(err.value)


@pytest.mark.parametrize(
    "missing", ["BUNSYNC_WEBHOOK_SECRETS", "BUNSYNC_BUNJANG_ACCESS_KEY", "BUNSYNC_BUNJANG_SECRET_KEY"]
)
def test_serve_requires_credentials(missing: str) -> None:
    env = {
        "BUNSYNC_WEBHOOK_SECRETS": "s",
        "BUNSYNC_BUNJANG_ACCESS_KEY": "a",
        "BUNSYNC_BUNJANG_SECRET_KEY": "c2s=",
    }
    del env[missing]
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env, is_tty=False).require_service_credentials()
    assert err.value.variable == missing


def test_the_app_password_is_optional_ascii_and_never_shown() -> None:
    assert Settings.from_env({}, is_tty=False).app_password is None
    assert Settings.from_env({"BUNSYNC_APP_PASSWORD": ""}, is_tty=False).app_password is None
    s = Settings.from_env({"BUNSYNC_APP_PASSWORD": " p@ss word "}, is_tty=False)
    assert s.app_password == " p@ss word "  # kept exactly: spaces may be part of it
    assert "p@ss" not in repr(s)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"BUNSYNC_APP_PASSWORD": "pässwört"}, is_tty=False)
    assert err.value.variable == "BUNSYNC_APP_PASSWORD" and "pässwört" not in str(err.value)
