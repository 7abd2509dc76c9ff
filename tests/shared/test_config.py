import subprocess
import sys

import pytest

from shared.config import load_settings


def test_defaults_work_for_make_run(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("VIGIL_INGEST_PORT", "VIGIL_WEB_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.ingest_port, settings.web_port) == (8081, 8080)


def test_sender_tokens_and_delays_parse(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VIGIL_INGEST_TOKENS", "grafana=grafana-token-0123456, cron=cron-token-0123456789")
    monkeypatch.setenv("VIGIL_RETRY_DELAYS_MS", "100,2000")
    settings = load_settings()
    assert {k: v.get_secret_value() for k, v in settings.ingest_tokens.items()} == {
        "grafana": "grafana-token-0123456",
        "cron": "cron-token-0123456789",
    }
    assert settings.retry_delays_ms == (100, 2000)


def test_wrong_value_fails_at_start_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from shared.config import load_settings; load_settings()"],
        env={"VIGIL_INGEST_PORT": "eighty", "VIGIL_RETRY_DELAYS_MS": "soon", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "VIGIL_INGEST_PORT" in result.stderr
    assert "VIGIL_RETRY_DELAYS_MS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("VIGIL_API_TOKEN", "change-me", "example value"),
        ("VIGIL_API_TOKEN", "Change-Me", "example value"),
        ("VIGIL_INGEST_TOKEN", "short-token", "shorter than 16"),
        ("VIGIL_INGEST_TOKENS", "grafana=replace-with-the-fail2ban-token", "sender 'grafana'"),
        ("VIGIL_WEB_READONLY_TOKENS", "a-fine-long-readonly-token,tiny", "token 2"),
        ("VIGIL_DATABASE_URL", "postgresql://vigil:change-me@db:5432/vigil", "password is an example"),
        ("VIGIL_AMQP_URL", "amqp://vigil:vigil@rabbitmq:5672/", "password is an example"),
        ("VIGIL_AMQP_URL", "amqp://vigil:@rabbitmq:5672/", "password is empty"),
    ],
)
def test_a_weak_or_example_secret_stops_the_service_naming_the_variable(variable: str, value: str, reason: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.ingest"],
        env={variable: value, "PATH": "/usr/bin", "PYTHONPATH": "."},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr and reason in result.stderr, result.stderr
    assert value not in result.stderr or value == "vigil"  # a secret is named, never printed
    assert "Traceback" not in result.stderr


def test_strong_secrets_and_passwordless_urls_are_taken(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VIGIL_API_TOKEN", "9f86d081884c7d659a2feaa0c55ad015")
    monkeypatch.setenv("VIGIL_DATABASE_URL", "postgresql://vigil@db:5432/vigil")  # peer or certificate auth
    monkeypatch.setenv("VIGIL_AMQP_URL", "amqp://vigil:a%2Fgenerated%2Fpassword%3D%3D@rabbitmq:5672/")
    settings = load_settings()
    assert settings.api_token is not None and settings.api_token.get_secret_value().startswith("9f86")
