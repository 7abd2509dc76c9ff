"""Configuration from VIGIL_* environment variables.

One settings class for every service keeps the list of variables in one place (the README documents
exactly these fields). A wrong value stops the process at start with the variable's name in the message.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from shared import broker_urls
from shared.secret_values import url_password_weakness, weakness

ENV_PREFIX = "VIGIL_"


class ConfigError(SystemExit):
    """Raised for an unusable configuration; exits the process with a readable message."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True)

    state_dir: Path = Field(Path(".run"), description="Where `make run` keeps data, logs and pids.")
    host: str = Field("127.0.0.1", description="Address every service binds to.")
    ingest_port: int = Field(8081, ge=1, le=65535)
    web_port: int = Field(8080, ge=1, le=65535)
    correlator_port: int = Field(8082, ge=1, le=65535, description="Health and metrics of the correlator.")
    enricher_port: int = Field(8083, ge=1, le=65535, description="Health and metrics of the enricher.")
    reporter_port: int = Field(8084, ge=1, le=65535, description="Health and metrics of the reporter.")

    database_url: str = Field("postgresql://vigil@127.0.0.1:55432/vigil", description="PostgreSQL DSN.")
    database_pool_size: int = Field(10, ge=1, le=200)
    amqp_url: str = Field(
        "amqp://vigil@127.0.0.1:55672/",
        description="RabbitMQ URL, or the URLs of a cluster's nodes, comma-separated (tried in turn); a password, if "
        "any, must be a real one.",
    )
    prefetch: int = Field(
        400,
        ge=1,
        le=10_000,
        description="Unacknowledged messages per service process, shared by its consumer lanes.",
    )
    retry_delays_ms: Annotated[tuple[int, ...], NoDecode] = Field(
        (1_000, 10_000, 60_000), description="Delays between redeliveries of a failed message."
    )
    max_attempts: int = Field(5, ge=1, le=100, description="Failed handlings before a message is parked.")
    background_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Nice value of the enricher and reporter, so the alert path keeps the CPU in a storm; 0: equal.",
    )
    publish_timeout_s: float = Field(5.0, gt=0, description="How long to wait for a broker confirm.")
    stall_after_s: float = Field(
        120.0,
        ge=1,
        le=86_400,
        description="/readyz fails once a consumer lane has had messages waiting this long without settling any.",
    )
    refresh_interval_ms: int = Field(
        10_000,
        ge=100,
        le=3_600_000,
        description="While an incident grows, it is enriched and its reports rendered at most once per interval.",
    )

    ingest_token: SecretStr | None = Field(None, description="Bearer token of the default sender.")
    ingest_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict, description="More senders, one token each: `grafana=token1,cron=token2`."
    )
    ingest_max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Off: every publish goes through aio-pika's own confirmed publish (slower, no reliance on aiormq internals).
    ingest_fast_publish: bool = True
    # What one alert may carry. Past a limit a value is cut with a visible marker and counted, never refused:
    # Alertmanager drops a whole notification it gets a 4xx for. The caps keep every indexed value under
    # PostgreSQL's index row limit (about 2.7 kB) whatever is configured.
    ingest_max_alerts: int = Field(
        1000, ge=1, le=100_000, description="Alerts per request; more: 413 (set Alertmanager's max_alerts to this)."
    )
    ingest_max_labels: int = Field(100, ge=8, le=1000, description="Labels per alert, and annotations per alert.")
    ingest_max_label_name_bytes: int = Field(256, ge=64, le=1024, description="Bytes of a label or annotation name.")
    ingest_max_label_value_bytes: int = Field(2048, ge=64, le=2048, description="Bytes of a label value.")
    ingest_max_annotation_bytes: int = Field(32_768, ge=256, le=1_048_576, description="Bytes of an annotation value.")
    ingest_max_generator_url_bytes: int = Field(8192, ge=256, le=65_536, description="Bytes of a generatorURL.")
    ingest_max_fingerprint_bytes: int = Field(
        128, ge=16, le=1024, description="Bytes kept, for display, of a fingerprint replaced by a hash."
    )
    api_token: SecretStr | None = Field(None, description="Responder token for the web JSON API.")
    web_readonly_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Read-only tokens for the web JSON API, comma-separated."
    )
    web_users_file: Path | None = Field(
        None, description="YAML file of web users (argon2 password hashes, role responder or viewer)."
    )
    web_trusted_header: str | None = Field(
        None, description="Header naming the user, set by a trusted proxy (e.g. X-Forwarded-User); off if unset."
    )
    web_anonymous_read: bool = Field(False, description="Let anyone read the dashboard and API without logging in.")
    web_cookie_secure: bool = Field(True, description="Send session cookies only over HTTPS.")
    web_login_max_failures: int = Field(
        5, ge=0, description="Failed logins a user name may have within the lockout window; 0: no limit."
    )
    web_login_lockout_s: int = Field(
        300, ge=1, description="The lockout window: a locked user name may try again once its failures age out."
    )
    web_login_max_failures_per_address: int = Field(
        20, ge=0, description="Failed logins one client address may have within the lockout window; 0: no limit."
    )
    web_login_concurrency: int = Field(
        2, ge=1, le=64, description="Password checks (64 MiB of argon2 each) running at once; more wait, then 503."
    )
    web_login_wait_s: float = Field(2.0, gt=0, le=60, description="How long a login waits for a password check slot.")
    web_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="CIDRs of reverse proxies whose VIGIL_WEB_TRUSTED_HEADER and X-Forwarded-For are believed; "
        "comma-separated.",
    )
    web_read_timeout_s: float = Field(
        10.0, gt=0, le=600, description="How long a client may take to send a request's headers and body."
    )
    web_statement_timeout_ms: int = Field(
        5000, ge=100, description="statement_timeout of the web's page and API queries."
    )
    web_audit_statement_timeout_ms: int = Field(
        120_000, ge=1000, description="statement_timeout of an audit export's queries."
    )
    web_max_live_clients: int = Field(200, ge=1, description="Live (server-sent events) connections at once.")
    web_max_audit_exports: int = Field(2, ge=1, le=16, description="Audit exports built at once; more get 503.")
    web_insights_fresh_s: float = Field(
        60,
        ge=0,
        le=3600,
        description="How long the insights page's figures are served before recomputed (they say when they were "
        "computed); 0: computed for every request.",
    )
    web_database_url: str | None = Field(
        None,
        description="PostgreSQL DSN of the web's own least-privilege role (vigil_web); unset: VIGIL_DATABASE_URL.",
    )
    retention_days: int = Field(
        400, ge=1, le=36_500, description="Resolved incidents and all their rows are deleted this long after resolve."
    )
    message_retention_days: int = Field(
        7, ge=1, le=365, description="Published outbox rows and processed-message ids are deleted after this."
    )

    prometheus_url: str = Field("http://127.0.0.1:59090")
    prometheus_trusted_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="host[:port] of Prometheus servers, besides VIGIL_PROMETHEUS_URL's, whose alert expressions "
        "(from generatorURL) the enricher may run; comma-separated.",
    )
    loki_url: str = Field("http://127.0.0.1:53100")
    alertmanager_url: str = Field(
        "", description="Alertmanager's external URL, for silence links in reports; empty: no silence links."
    )
    alertmanager_api_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Alertmanager API base URLs (an HA pair: each one), comma-separated: the correlator polls their "
        "silences and inhibitions, the web makes silences there; empty: neither.",
    )
    alertmanager_poll_interval_s: float = Field(
        5.0, gt=0, le=300, description="How often the correlator asks Alertmanager what it silences and inhibits."
    )
    silence_acknowledges: bool = Field(
        True, description="A silence newly covering an open incident's alert acknowledges it as the silence's author."
    )
    correlation_rules: Path = Field(Path("deploy/correlation.yml"))
    enrichment_config: Path = Field(
        Path("deploy/enrichment.yml"), description="Enricher: window, steps, limits and PromQL/LogQL query templates."
    )
    response_targets_file: Path | None = Field(
        None,
        description="YAML file of response-time targets per severity (acknowledge, resolve), for the audit's "
        "missed-targets list; unset: no targets.",
    )
    log_level: str = Field("INFO")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("retry_delays_ms", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return tuple(int(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise ValueError("expected comma-separated milliseconds, e.g. 1000,10000") from None
        return value

    @field_validator("ingest_tokens", mode="before")
    @classmethod
    def _sender_tokens(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        tokens: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, token = item.partition("=")
            if not sep or not name.strip() or not token.strip():
                raise ValueError("expected sender=token pairs separated by commas")
            tokens[name.strip()] = token.strip()
        return tokens

    @field_validator(
        "web_readonly_tokens", "prometheus_trusted_hosts", "web_trusted_proxies", "alertmanager_api_urls", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("ingest_token", "api_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := weakness(value.get_secret_value())):
            raise ValueError(f"the token {problem}")
        return value

    @field_validator("ingest_tokens")
    @classmethod
    def _strong_sender_tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for sender, token in value.items():
            if problem := weakness(token.get_secret_value()):
                raise ValueError(f"the token of sender {sender!r} {problem}")
        return value

    @field_validator("web_readonly_tokens")
    @classmethod
    def _strong_tokens(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for n, token in enumerate(value, 1):
            if problem := weakness(token.get_secret_value()):
                raise ValueError(f"token {n} {problem}")
        return value

    @field_validator("database_url", "web_database_url")
    @classmethod
    def _strong_url_password(cls, value: str | None) -> str | None:
        if value is not None and (problem := url_password_weakness(value)):
            raise ValueError(problem)
        return value

    @field_validator("amqp_url")
    @classmethod
    def _broker_urls(cls, value: str) -> str:
        urls = broker_urls.split(value)
        for n, url in enumerate(urls, 1):
            if problem := url_password_weakness(url):
                raise ValueError(problem if len(urls) == 1 else f"URL {n}: {problem}")
        return value

    @field_validator("web_trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"not an address or CIDR: {cidr!r}") from None
        return value

    @field_validator("retry_delays_ms")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(d <= 0 for d in value):
            raise ValueError("needs at least one delay, each above 0 ms")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; on error, exit naming each wrong VIGIL_* variable."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        print(f"vigil: invalid configuration\n  {exc}", file=sys.stderr)
        raise ConfigError(2) from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        print("vigil: invalid configuration\n  " + "\n  ".join(lines), file=sys.stderr)
        raise ConfigError(2) from None
