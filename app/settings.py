"""bunsync's settings: one frozen object built once from the ``BUNSYNC_*`` environment variables.

Every field is documented here and in the README's configuration table. A bad or missing value raises
:class:`ConfigError`, whose message is one line naming the variable; the CLI prints it and exits 2.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from app.feed import signing
from app.http1 import Endpoint

T = TypeVar("T")

DEFAULT_BUNJANG_BASE_URL = "https://openapi.bunjang.co.kr"


class ConfigError(Exception):
    """A configuration variable is missing or invalid; ``str(err)`` names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything bunsync reads from its environment.

    Attributes:
        database_url: PostgreSQL DSN; ``None`` means "start the embedded cluster under ``data_dir``".
        data_dir: where the embedded cluster (and other local state) lives.
        host, port: the webhook listener's address (internet-facing: only webhooks and health).
        admin_host, admin_port: the operator listener's address (``/status``, ``/metrics``); port 0 = off.
        admin_token: bearer token the operator listener requires (but on ``/health/*``); ``None`` = none,
            allowed only on a loopback ``admin_host``.
        http_header_timeout_s: time a connection has to deliver a request's line and headers.
        http_body_timeout_s: time a request has to deliver its body once its headers are in.
        http_max_connections: open connections the webhook listener keeps at most.
        webhook_secrets: signing secrets; a webhook signed by any of them is accepted (rotation).
        signature_tolerance_s: allowed ``|now - t|`` for a webhook signature.
        bunjang_base_url: the Bunjang REST API base URL.
        bunjang_access_key, bunjang_secret_key: REST credentials (secret key base64, as issued).
        reconcile_interval_s, reconcile_overlap_s, reconcile_lookback_s: the reconciler's schedule.
        fetch_concurrency: concurrent Get Order calls per process.
        fetch_max_attempts: attempts before a fetch is parked as dead.
        log_format: ``console`` or ``json``.
        embedded_pg_user: as root, the system user that runs the embedded PostgreSQL
            (``BUNSYNC_PG_USER``; default ``postgres`` if it exists, else ``nobody``).
        pii_retention_days: days after an order's last item reached a final status (per the API)
            before its buyer's personal data is erased (``BUNSYNC_PII_RETENTION_DAYS``).
        app_password: password of ``bunsync_app``, the service's login role (``BUNSYNC_APP_PASSWORD``;
            ``None``: trust/peer authentication or ``.pgpass``). ``migrate`` sets it; the service logs in
            with it when the DSN's role is privileged (``app.store.roles``). Never shown in a repr or a log.
        bunjang_max_body_bytes: the largest Bunjang answer read (Get Order, a List Orders page); a
            larger one is refused (a Get Order fetch is dead-lettered with the reason).
        bunjang_request_deadline_s: the total time one request to Bunjang may take, body included.
        reconcile_max_pages: the most List Orders pages read per 15-day window.
        reconcile_pass_deadline_s: the longest a reconcile pass may run before it is cut (failed).
        forward_url: the partner's endpoint that receives the change feed as Standard Webhooks
            (``BUNSYNC_FORWARD_URL``; ``None``: forwarding off).
        forward_key: the signing key of ``BUNSYNC_FORWARD_SECRET`` (``whsec_`` + base64), decoded;
            required together with ``forward_url``. Never shown in a repr or a log.
        bunjang_proxy_variable: the name of a proxy variable (``HTTPS_PROXY``, ``ALL_PROXY``, ...) that
            would apply to ``bunjang_base_url``, or ``None``. bunsync's Bunjang client connects
            directly and does not use proxies, so ``serve`` refuses to start when one applies rather
            than silently bypass it (list the host in ``NO_PROXY`` to go direct on purpose).
    """

    database_url: str | None
    data_dir: Path
    host: str
    port: int
    admin_host: str
    admin_port: int
    admin_token: str | None
    http_header_timeout_s: float
    http_body_timeout_s: float
    http_max_connections: int
    webhook_secrets: tuple[str, ...]
    signature_tolerance_s: int
    bunjang_base_url: str
    bunjang_access_key: str
    bunjang_secret_key: str
    reconcile_interval_s: int
    reconcile_overlap_s: int
    reconcile_lookback_s: int
    fetch_concurrency: int
    fetch_max_attempts: int
    log_format: str
    embedded_pg_user: str | None
    pii_retention_days: int
    app_password: str | None = field(repr=False)
    bunjang_max_body_bytes: int = 5 * 1024 * 1024
    bunjang_request_deadline_s: int = 30
    reconcile_max_pages: int = 1000
    reconcile_pass_deadline_s: int = 3600
    forward_url: str | None = None
    forward_key: bytes | None = field(default=None, repr=False)
    bunjang_proxy_variable: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, is_tty: bool | None = None) -> Settings:
        """Build settings from ``env`` (usually ``os.environ``); raise :class:`ConfigError` on bad values.

        Secrets and credentials may be empty here; :meth:`require_service_credentials` checks them for
        the commands that need them (``serve``), so ``migrate`` or ``status`` work without them.
        """
        r = _Reader(env)
        tty = sys.stderr.isatty() if is_tty is None else is_tty
        bunjang_base_url = r.get("BUNSYNC_BUNJANG_BASE_URL", DEFAULT_BUNJANG_BASE_URL, _http_url)
        return cls(
            database_url=r.get("BUNSYNC_DATABASE_URL", None, _dsn),
            data_dir=r.get("BUNSYNC_DATA_DIR", ".bunsync", _path),
            host=r.get("BUNSYNC_HOST", "127.0.0.1", _nonempty),
            port=r.get("BUNSYNC_PORT", "8080", _port),
            admin_host=r.get("BUNSYNC_ADMIN_HOST", "127.0.0.1", _nonempty),
            admin_port=r.get("BUNSYNC_ADMIN_PORT", "8081", _port),
            admin_token=r.get("BUNSYNC_ADMIN_TOKEN", None, _token),
            http_header_timeout_s=r.get("BUNSYNC_HTTP_HEADER_TIMEOUT_S", "10", _positive_seconds),
            http_body_timeout_s=r.get("BUNSYNC_HTTP_BODY_TIMEOUT_S", "15", _positive_seconds),
            http_max_connections=r.get("BUNSYNC_HTTP_MAX_CONNECTIONS", "1000", _positive_int),
            webhook_secrets=r.get("BUNSYNC_WEBHOOK_SECRETS", "", _secrets),
            signature_tolerance_s=r.get("BUNSYNC_SIGNATURE_TOLERANCE_S", "300", _positive_int),
            bunjang_base_url=bunjang_base_url,
            bunjang_access_key=r.get("BUNSYNC_BUNJANG_ACCESS_KEY", "", str.strip),
            bunjang_secret_key=r.get("BUNSYNC_BUNJANG_SECRET_KEY", "", _base64_or_empty),
            reconcile_interval_s=r.get("BUNSYNC_RECONCILE_INTERVAL_S", "300", _positive_int),
            reconcile_overlap_s=r.get("BUNSYNC_RECONCILE_OVERLAP_S", "600", _non_negative_int),
            reconcile_lookback_s=r.get("BUNSYNC_RECONCILE_LOOKBACK_S", "259200", _positive_int),
            fetch_concurrency=r.get("BUNSYNC_FETCH_CONCURRENCY", "4", _positive_int),
            fetch_max_attempts=r.get("BUNSYNC_FETCH_MAX_ATTEMPTS", "12", _positive_int),
            log_format=r.get("BUNSYNC_LOG_FORMAT", "console" if tty else "json", _log_format),
            embedded_pg_user=r.get("BUNSYNC_PG_USER", None, _optional),
            pii_retention_days=r.get("BUNSYNC_PII_RETENTION_DAYS", "90", _retention_days),
            app_password=r.get("BUNSYNC_APP_PASSWORD", None, _password),
            bunjang_max_body_bytes=r.get("BUNSYNC_BUNJANG_MAX_BODY_BYTES", "5242880", _positive_int),
            bunjang_request_deadline_s=r.get("BUNSYNC_BUNJANG_REQUEST_DEADLINE_S", "30", _positive_int),
            reconcile_max_pages=r.get("BUNSYNC_RECONCILE_MAX_PAGES", "1000", _positive_int),
            reconcile_pass_deadline_s=r.get("BUNSYNC_RECONCILE_PASS_DEADLINE_S", "3600", _positive_int),
            **_forwarding(r),
            bunjang_proxy_variable=proxy_variable_for(env, bunjang_base_url),
        )

    def require_service_credentials(self) -> None:
        """Raise :class:`ConfigError` unless the secrets ``serve`` needs are all set."""
        if not self.webhook_secrets:
            raise ConfigError("BUNSYNC_WEBHOOK_SECRETS", "required: comma-separated webhook signing secrets")
        if not self.bunjang_access_key:
            raise ConfigError("BUNSYNC_BUNJANG_ACCESS_KEY", "required: the Bunjang Open API access key")
        if not self.bunjang_secret_key:
            raise ConfigError("BUNSYNC_BUNJANG_SECRET_KEY", "required: the Bunjang Open API secret key")
        if self.bunjang_proxy_variable:
            raise ConfigError(
                self.bunjang_proxy_variable,
                f"set, but bunsync connects to Bunjang ({self.bunjang_base_url}) directly and does not use "
                "a proxy: unset it, or list the host in NO_PROXY to confirm the direct connection",
            )
        if self.admin_port and self.admin_token is None and not is_loopback(self.admin_host):
            raise ConfigError(
                "BUNSYNC_ADMIN_TOKEN",
                f"required when BUNSYNC_ADMIN_HOST ({self.admin_host}) is not a loopback address: the "
                "operator listener serves /status and /metrics, which must not be open to the network",
            )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine: ``localhost`` or a loopback IP (127.0.0.0/8, ``::1``).

    Any other name counts as not loopback: it could resolve to anything."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_variable_for(env: Mapping[str, str], url: str) -> str | None:
    """The proxy variable that applies to ``url`` (``<scheme>_proxy`` or ``all_proxy``, either case,
    unless ``NO_PROXY``/``no_proxy`` lists the host, a parent domain or ``*``), or ``None``.

    Loopback hosts are never proxied. The value is never read further (it may hold credentials)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or is_loopback(host):
        return None
    scheme = parts.scheme.lower()
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
    variable = next((name for name in names if env.get(name, "").strip()), None)
    if variable is None:
        return None
    for entry in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return None
        domain = entry.lstrip("*.")
        if domain.count(":") == 1:  # host:port
            domain = domain.split(":")[0]
        if domain and (host == domain or host.endswith(f".{domain}")):
            return None
    return variable


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, default: str | None, parse: Callable[[str], T]) -> T:
        raw = self._env.get(name)
        if raw is None or (raw.strip() == "" and default is not None):
            if default is None:
                return None  # type: ignore[return-value]  # only optional parsers get a None default
            raw = default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(name, f"{exc} (got {_shown(name, raw)})") from None


def _shown(name: str, raw: str) -> str:
    if "SECRET" in name or "DATABASE_URL" in name or "PASSWORD" in name or "TOKEN" in name:
        return "a value that is not shown"
    return repr(raw)


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _optional(raw: str) -> str | None:
    return raw.strip() or None


def _password(raw: str) -> str | None:
    # Printable ASCII: PostgreSQL's SASLprep leaves it as is, so the SCRAM verifier bunsync computes
    # (app/db_roles.py) matches what the server and the driver compute. Not stripped: spaces may be meant.
    if raw == "":
        return None
    if not all(" " <= c <= "~" for c in raw):
        raise ValueError("must be printable ASCII (e.g. openssl rand -base64 32)")
    return raw


def _dsn(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL")
    return raw


def _path(raw: str) -> Path:
    return Path(_nonempty(raw)).expanduser()


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("must be an integer") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _retention_days(raw: str) -> int:
    value = _positive_int(raw)
    if value > 36_500:
        raise ValueError("must be a number of days between 1 and 36500")
    return value


def _non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not 0 < value <= 3600:
        raise ValueError("must be more than 0 and at most 3600 seconds")
    return value


_MIN_TOKEN_LEN = 16


def _token(raw: str) -> str | None:
    token = raw.strip()
    if not token:
        return None
    if len(token) < _MIN_TOKEN_LEN or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(f"must be at least {_MIN_TOKEN_LEN} printable ASCII characters without spaces")
    return token


def _port(raw: str) -> int:
    value = _int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port between 0 and 65535")
    return value


def _secrets(raw: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in raw.split(","))
    if raw.strip() and not all(parts):
        raise ValueError("has an empty secret between commas")
    return tuple(p for p in parts if p)


def _http_url(raw: str) -> str:
    raw = raw.strip().rstrip("/")
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return raw


def _base64_or_empty(raw: str) -> str:
    raw = raw.strip()
    if raw:
        try:
            base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64, as Bunjang issues it") from None
    return raw


def _forwarding(r: _Reader) -> dict[str, Any]:
    """``forward_url`` and ``forward_key``: both set, or neither."""
    url = r.get("BUNSYNC_FORWARD_URL", None, _forward_url)
    key = r.get("BUNSYNC_FORWARD_SECRET", None, _forward_secret)
    if url is not None and key is None:
        raise ConfigError("BUNSYNC_FORWARD_SECRET", "required with BUNSYNC_FORWARD_URL: 'whsec_' + base64")
    if key is not None and url is None:
        raise ConfigError("BUNSYNC_FORWARD_URL", "required with BUNSYNC_FORWARD_SECRET: the endpoint to call")
    return {"forward_url": url, "forward_key": key}


def _forward_url(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    Endpoint.parse(raw)  # ValueError: not http(s), no host, a bad port, spaces or control characters
    parts = urlsplit(raw)
    if parts.username or parts.password:
        raise ValueError("must not carry credentials (the requests are signed with BUNSYNC_FORWARD_SECRET)")
    return raw


def _forward_secret(raw: str) -> bytes | None:
    if not raw.strip():
        return None
    return signing.parse_secret(raw)


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("console", "json"):
        raise ValueError("must be 'console' or 'json'")
    return value
