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


def test_the_operator_listener_defaults_to_loopback_8081_without_a_token() -> None:
    s = Settings.from_env({}, is_tty=False)
    assert (s.admin_host, s.admin_port, s.admin_token) == ("127.0.0.1", 8081, None)
    assert (s.http_header_timeout_s, s.http_body_timeout_s, s.http_max_connections) == (10.0, 15.0, 1000)


SERVE_ENV = {
    "BUNSYNC_WEBHOOK_SECRETS": "s",
    "BUNSYNC_BUNJANG_ACCESS_KEY": "a",
    "BUNSYNC_BUNJANG_SECRET_KEY": "c2VjcmV0",
}


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "ops.internal"])
def test_an_operator_listener_off_loopback_needs_a_token(host: str) -> None:
    s = Settings.from_env({**SERVE_ENV, "BUNSYNC_ADMIN_HOST": host}, is_tty=False)
    with pytest.raises(ConfigError) as err:
        s.require_service_credentials()
    assert err.value.variable == "BUNSYNC_ADMIN_TOKEN" and "\n" not in str(err.value)
    token = "x" * 16
    Settings.from_env(
        {**SERVE_ENV, "BUNSYNC_ADMIN_HOST": host, "BUNSYNC_ADMIN_TOKEN": token}, is_tty=False
    ).require_service_credentials()
    # ... or when the operator listener is off.
    Settings.from_env(
        {**SERVE_ENV, "BUNSYNC_ADMIN_HOST": host, "BUNSYNC_ADMIN_PORT": "0"}, is_tty=False
    ).require_service_credentials()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_a_loopback_operator_listener_needs_no_token(host: str) -> None:
    Settings.from_env({**SERVE_ENV, "BUNSYNC_ADMIN_HOST": host}, is_tty=False).require_service_credentials()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BUNSYNC_ADMIN_TOKEN", "short"),
        ("BUNSYNC_ADMIN_TOKEN", "has a space in it, long enough"),
        ("BUNSYNC_ADMIN_PORT", "-1"),
        ("BUNSYNC_HTTP_HEADER_TIMEOUT_S", "0"),
        ("BUNSYNC_HTTP_BODY_TIMEOUT_S", "soon"),
        ("BUNSYNC_HTTP_MAX_CONNECTIONS", "0"),
    ],
)
def test_a_bad_http_value_names_its_variable_and_never_shows_a_token(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({variable: value}, is_tty=False)
    assert err.value.variable == variable
    if "TOKEN" in variable:
        assert value not in str(err.value)


SERVE = {
    "BUNSYNC_WEBHOOK_SECRETS": "s",
    "BUNSYNC_BUNJANG_ACCESS_KEY": "k",
    "BUNSYNC_BUNJANG_SECRET_KEY": "c2VjcmV0",
}


@pytest.mark.parametrize(
    ("proxies", "variable"),
    [
        ({"HTTPS_PROXY": "http://user:pw@proxy:3128"}, "HTTPS_PROXY"),
        ({"https_proxy": "http://proxy:3128"}, "https_proxy"),
        ({"ALL_PROXY": "socks5://proxy:1080"}, "ALL_PROXY"),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost,other.example"}, "HTTPS_PROXY"),
    ],
)
def test_serve_refuses_a_proxy_it_would_not_use_and_names_the_variable(
    proxies: dict[str, str], variable: str
) -> None:
    settings = Settings.from_env({**SERVE, **proxies}, is_tty=False)
    with pytest.raises(ConfigError) as err:
        settings.require_service_credentials()
    assert err.value.variable == variable
    assert "does not use a proxy" in str(err.value) and "NO_PROXY" in str(err.value)
    assert "pw" not in str(err.value) and "3128" not in str(err.value)  # the value may hold credentials


@pytest.mark.parametrize(
    "env",
    [
        {"HTTP_PROXY": "http://proxy:3128"},  # for http:// only; Bunjang is https
        {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost,.bunjang.co.kr"},
        {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "openapi.bunjang.co.kr:443"},
        {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"},
        {"ALL_PROXY": "http://proxy:3128", "BUNSYNC_BUNJANG_BASE_URL": "http://127.0.0.1:8090"},
    ],
)
def test_a_proxy_that_does_not_apply_to_bunjang_is_no_obstacle(env: dict[str, str]) -> None:
    settings = Settings.from_env({**SERVE, **env}, is_tty=False)
    assert settings.bunjang_proxy_variable is None
    settings.require_service_credentials()
