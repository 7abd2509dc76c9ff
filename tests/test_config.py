import subprocess
import sys

from shared.config import load_settings


def test_defaults_work_for_make_run(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("VIGIL_INGEST_PORT", "VIGIL_WEB_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.ingest_port, settings.web_port) == (8081, 8080)


def test_sender_tokens_and_delays_parse(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VIGIL_INGEST_TOKENS", "grafana=abc, cron=def")
    monkeypatch.setenv("VIGIL_RETRY_DELAYS_MS", "100,2000")
    settings = load_settings()
    assert {k: v.get_secret_value() for k, v in settings.ingest_tokens.items()} == {"grafana": "abc", "cron": "def"}
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
