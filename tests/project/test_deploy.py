"""Checks of the docker-compose deployment and its configs (deploy/), without a Docker engine.

Uses the real validators: docker-compose (config), promtool and amtool. A missing tool fails the
test instead of skipping it: scripts/provision installs them (docker-compose, prometheus,
prometheus-alertmanager from Debian).
"""

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import psycopg
import pytest
import yaml

from devstack.postgres import pg_bin
from shared import broker_urls
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

VIGIL_PORTS = {"web": 8080, "ingest": 8081, "correlator": 8082, "enricher": 8083, "reporter": 8084}
PUBLISHED = {"web", "ingest", "grafana", "oauth2-proxy"}
REQUIRED_ENV = {
    "POSTGRES_PASSWORD",
    "WEB_DB_PASSWORD",
    "RABBITMQ_PASSWORD",
    "VIGIL_API_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
}

# Vigil's metrics (name -> kind) and the prometheus_client process collector's.
VIGIL_METRICS = {
    "vigil_ingest_requests_total": "counter",
    "vigil_ingest_alerts_accepted_total": "counter",
    "vigil_ingest_rejects_total": "counter",
    "vigil_ingest_publish_seconds": "histogram",
    "vigil_ingest_notifications_per_message": "histogram",
    "vigil_messages_consumed_total": "counter",
    "vigil_message_handle_seconds": "histogram",
    "vigil_incidents_total": "counter",
    "vigil_enrichment_seconds": "histogram",
    "vigil_upstream_errors_total": "counter",
    "vigil_reports_rendered_total": "counter",
    "vigil_ingest_alert_values_adjusted_total": "counter",
    "vigil_consumer_batch_splits_total": "counter",
    "vigil_web_insights_served_total": "counter",
    "vigil_web_insights_compute_seconds": "histogram",
    "vigil_web_insights_refresh_failures_total": "counter",
    "vigil_consumer_oldest_unacked_seconds": "gauge",
    "vigil_consumer_stalled": "gauge",
    "vigil_topology_outdated_queues": "gauge",
    "vigil_retention_deleted_rows_total": "counter",
    "vigil_retention_last_pass_timestamp_seconds": "gauge",
    "vigil_correlator_alertmanager_polls_total": "counter",
    "vigil_correlator_suppression_changes_total": "counter",
    "vigil_web_alertmanager_requests_total": "counter",
    "vigil_correlator_alerts_total": "counter",
    "vigil_correlator_commands_total": "counter",
    "vigil_correlator_outbox_pending": "gauge",
    "vigil_correlator_swept_total": "counter",
    "vigil_enrichment_steps_total": "counter",
    "vigil_upstream_circuit_open": "gauge",
    "vigil_report_versions_total": "counter",
    "vigil_report_prune_passes_total": "counter",
    "vigil_reports_pruned_total": "counter",
    "vigil_retention_passes_total": "counter",
    "vigil_start_time_seconds": "gauge",
    "vigil_http_requests_timed_out_total": "counter",
    "vigil_web_request_seconds": "histogram",
    "vigil_web_commands_total": "counter",
    "vigil_web_logins_total": "counter",
    "vigil_web_live_clients": "gauge",
    "vigil_web_live_dropped_total": "counter",
    "vigil_web_live_refused_total": "counter",
    "vigil_web_audit_exports_refused_total": "counter",
    "vigil_web_database_unanswered_total": "counter",
}
# Every vigil_* metric the services' and shared modules define, as their registry has them (name -> kind).
DEFINED_METRICS_SCRIPT = """
import importlib, json, pkgutil
from prometheus_client import REGISTRY
for package in ("services", "shared"):
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
print(json.dumps({
    family.name + ("_total" if family.type == "counter" else ""): family.type
    for family in REGISTRY.collect() if family.name.startswith("vigil_")
}))
"""
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}
# "up" is the series Prometheus itself writes for every scrape target.
KNOWN_SERIES = (
    {"up"}
    | PROCESS_METRICS
    | {n for n, kind in VIGIL_METRICS.items() if kind in ("counter", "gauge")}
    | {n + s for n, kind in VIGIL_METRICS.items() if kind == "histogram" for s in ("_bucket", "_sum", "_count")}
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/provision installs it)")
    return path


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    # A clean environment and an explicit env file: neither the developer's shell nor a real .env
    # may decide the outcome.
    return run(
        tool("docker-compose"),
        "--env-file",
        str(env_file),
        "-f",
        "docker-compose.yml",
        "config",
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
    )


@cache
def services() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = compose_config(Path(tmp), {k: f"test-{k.lower()}" for k in REQUIRED_ENV})
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_config_is_valid_with_every_service():
    names = set(services()["services"])
    assert names >= set(VIGIL_PORTS) | {
        "postgres",
        "rabbitmq",
        "prometheus",
        "alertmanager",
        "node-exporter",
        "cadvisor",
        "loki",
        "promtail",
        "grafana",
    }


@pytest.mark.parametrize("missing", sorted(REQUIRED_ENV))
def test_compose_refuses_to_start_without_each_secret(tmp_path, missing):
    proc = compose_config(tmp_path, {k: "x" for k in REQUIRED_ENV - {missing}})
    assert proc.returncode != 0
    assert f"set {missing} in .env" in proc.stderr


def test_env_example_documents_every_required_variable():
    raw = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", raw))
    assert required == REQUIRED_ENV
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(example) == REQUIRED_ENV
    assert set(example.values()) == {""}  # nothing usable: every secret is the reader's own


def test_compose_refuses_an_empty_secret(tmp_path):
    env = {k: "x" * 32 for k in REQUIRED_ENV} | {"VIGIL_API_TOKEN": ""}
    proc = compose_config(tmp_path, env)
    assert proc.returncode != 0 and "set VIGIL_API_TOKEN in .env" in proc.stderr


def test_every_image_is_pinned():
    for name, svc in services()["services"].items():
        image = svc.get("image", "")
        if "build" in svc:
            assert re.fullmatch(r"vigil:\d+\.\d+\.\d+", image), (name, image)
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, (name, image)
        assert tag != "latest" and re.match(r"v?\d+\.\d+", tag), (name, image)


def test_only_web_ingest_grafana_and_the_proxy_publish_and_only_on_loopback():
    published = set()
    for name, svc in services()["services"].items():
        for port in svc.get("ports", []):
            published.add(name)
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", (name, port)
    assert published == PUBLISHED


def test_unpublished_services_are_only_on_internal_networks():
    cfg = services()
    internal = {n for n, net in cfg["networks"].items() if (net or {}).get("internal")}
    for name, svc in cfg["services"].items():
        if name not in PUBLISHED:
            assert set(svc.get("networks", {})) <= internal, name


def test_the_web_believes_the_user_header_only_from_oauth2_proxys_address_on_an_internal_network():
    cfg = services()
    network = cfg["networks"]["web-proxy"]
    assert network["internal"] is True
    (pool,) = network["ipam"]["config"]
    subnet = ipaddress.ip_network(pool["subnet"])
    proxy = cfg["services"]["oauth2-proxy"]
    assert proxy["profiles"] == ["proxy"]  # not part of the default deployment
    assert proxy["user"].split(":")[0] not in {"0", "root"} and proxy["read_only"] is True
    address = ipaddress.ip_address(proxy["networks"]["web-proxy"]["ipv4_address"])
    assert address in subnet
    # Only the two of them are on it, and the proxy reaches the web by the alias it has there alone.
    on_it = {name for name, svc in cfg["services"].items() if "web-proxy" in svc.get("networks", {})}
    assert on_it == {"web", "oauth2-proxy"}
    (alias,) = cfg["services"]["web"]["networks"]["web-proxy"]["aliases"]
    assert proxy["environment"]["OAUTH2_PROXY_UPSTREAMS"] == f"http://{alias}:8080/"
    env = cfg["services"]["web"]["environment"]
    trusted = Settings(web_trusted_proxies=env["VIGIL_WEB_TRUSTED_PROXIES"]).web_trusted_proxies
    # The proxy's address only: the subnet also holds the host's bridge address, open to any local user.
    assert [ipaddress.ip_network(cidr) for cidr in trusted] == [ipaddress.ip_network(f"{address}/32")]


def test_the_default_deployment_runs_without_the_proxy():
    # `docker-compose up` without a profile starts every service but the proxy and the extra RabbitMQ nodes.
    cfg = services()
    profiled = {name: svc["profiles"] for name, svc in cfg["services"].items() if svc.get("profiles")}
    assert profiled == {
        "oauth2-proxy": ["proxy"],
        "rabbitmq-2": ["rabbitmq-cluster"],
        "rabbitmq-3": ["rabbitmq-cluster"],
    }
    web = cfg["services"]["web"]
    assert {"backend", "edge"} <= set(web["networks"]) and web["ports"]
    assert web["environment"]["VIGIL_WEB_TRUSTED_HEADER"] == ""  # off unless .env sets it


def test_vigil_services_are_non_root_healthchecked_and_configured():
    for name, port in VIGIL_PORTS.items():
        svc = services()["services"][name]
        assert svc["user"].split(":")[0] not in {"0", "root"}, name
        assert svc["read_only"] is True, name
        assert svc["restart"] == "unless-stopped", name
        assert svc["command"] == [f"services.{name}"], name
        assert svc["healthcheck"]["test"][:2] == ["CMD", "python"], name
        assert f"http://127.0.0.1:{port}/readyz" in svc["healthcheck"]["test"][-1], name
        env = svc["environment"]
        if name == "web":  # its own login, and never the schema owner's password
            assert "VIGIL_DATABASE_URL" not in env
            login = "postgresql://vigil_web_login:test-web_db_password@postgres:5432/vigil"
            assert env["VIGIL_WEB_DATABASE_URL"] == login
        else:
            assert env["VIGIL_DATABASE_URL"].startswith("postgresql://vigil:test-postgres_password@postgres:5432/")
            assert "VIGIL_WEB_DATABASE_URL" not in env
        assert env["VIGIL_AMQP_URL"].startswith("amqp://vigil:test-rabbitmq_password@rabbitmq:5672/,")
        assert env["VIGIL_PROMETHEUS_URL"] == "http://prometheus:9090"
        assert env["VIGIL_LOKI_URL"] == "http://loki:3100"
        assert env["VIGIL_HOST"] == "0.0.0.0"
        assert env["VIGIL_API_TOKEN"] == "test-vigil_api_token"
        assert env["VIGIL_CORRELATION_RULES"] == "/app/deploy/correlation.yml"


def test_every_service_restarts_and_third_party_ones_drop_root_where_the_image_allows():
    for name, svc in services()["services"].items():
        assert svc["restart"] == "unless-stopped", name
    # postgres and rabbitmq drop privileges in their entrypoints; cAdvisor and promtail need root.
    for name in ("prometheus", "alertmanager", "node-exporter", "loki", "grafana"):
        assert services()["services"][name]["user"].split(":")[0] not in {"0", "root"}, name


def test_ingest_and_alertmanager_share_the_token_file():
    cfg = services()
    (secret,) = cfg["secrets"]
    assert Path(cfg["secrets"][secret]["file"]) == DEPLOY / "secrets" / secret
    for name in ("ingest", "alertmanager"):
        assert [s["source"] for s in cfg["services"][name]["secrets"]] == [secret], name
    assert f"/run/secrets/{secret}" in " ".join(cfg["services"]["ingest"]["entrypoint"])
    (receiver,) = load_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")["receivers"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["http_config"]["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    # The secret file itself is the user's, and never committed.
    assert run("git", "check-ignore", "-q", f"deploy/secrets/{secret}").returncode == 0


def test_postgres_makes_the_webs_own_login_with_its_init_script(postgres, db_url):
    """The postgres image runs deploy/postgres/initdb/*.sh when it creates its volume; here the script runs as the
    image would (psql to the database as POSTGRES_USER), against the test cluster, twice: the second run is an
    operator changing WEB_DB_PASSWORD."""
    pg = services()["services"]["postgres"]
    assert pg["environment"]["VIGIL_WEB_DB_PASSWORD"] == "test-web_db_password"
    mounts = {v["target"]: v for v in pg["volumes"] if isinstance(v, dict)} or {
        v.split(":")[1]: {"source": v.split(":")[0], "read_only": v.endswith(":ro")} for v in pg["volumes"]
    }
    init = mounts["/docker-entrypoint-initdb.d"]
    assert Path(init["source"]) == DEPLOY / "postgres" / "initdb" and init["read_only"]
    (script,) = (DEPLOY / "postgres" / "initdb").glob("*.sh")
    assert os.access(script, os.X_OK)  # the image executes an executable script (and would source any other)
    database = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    env = {
        "PATH": f"{Path(pg_bin('psql')).parent}:/usr/bin:/bin",
        "POSTGRES_USER": postgres.user,
        "POSTGRES_DB": str(database),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGPASSWORD": postgres.password,
    }
    web_url = db_url.replace(f"{postgres.user}:{postgres.password}@", "vigil_web_login:{}@")
    for password in ("first-password-0123456789", "second-password-0123456789"):
        proc = run("sh", str(script), env={**env, "VIGIL_WEB_DB_PASSWORD": password})
        assert proc.returncode == 0, proc.stderr
        with psycopg.connect(web_url.format(password), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM incidents")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(web_url.format("first-password-0123456789"))
    refused = run("sh", str(script), env={**env, "VIGIL_WEB_DB_PASSWORD": ""})
    assert refused.returncode != 0 and "set WEB_DB_PASSWORD in .env" in refused.stderr


def test_bind_mounted_repo_files_exist():
    for name, svc in services()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith(str(ROOT)):
                assert Path(source).exists(), (name, source)


def test_dockerfile_builds_one_non_root_image():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert re.search(r"^USER 10001(:10001)?$", text, re.M)
    assert 'ENTRYPOINT ["python", "-m"]' in text
    assert 'CMD ["services.web"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".run", ".env"} <= set(ignored)


# --- Prometheus ---------------------------------------------------------------------------------


def test_promtool_checks_config_and_the_rule_files_it_loads():
    proc = run(tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 rule files found" in proc.stdout + proc.stderr


def test_promtool_checks_rules():
    rules = sorted(str(p.relative_to(ROOT)) for p in (DEPLOY / "prometheus" / "rules").glob("*.yml"))
    assert len(rules) == 3
    proc = run(tool("promtool"), "check", "rules", *rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rule_unit_tests_pass():
    tests = sorted(str(p.relative_to(ROOT)) for p in (DEPLOY / "prometheus" / "tests").glob("*.yml"))
    assert tests
    proc = run(tool("promtool"), "test", "rules", *tests)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_scrapes_every_vigil_service_on_its_port():
    cfg = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "vigil"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:{port}" for name, port in VIGIL_PORTS.items()}


def test_rules_cover_host_containers_and_vigil_and_name_only_real_vigil_metrics():
    exprs = {}
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
                assert rule["annotations"]["summary"], rule["alert"]
                exprs[rule["alert"]] = rule["expr"]
    assert {"InstanceDown", "HostHighCpu", "HostHighMemory", "HostDiskFilling"} <= set(exprs)
    assert any("container_" in e for e in exprs.values())
    for alert, expr in exprs.items():
        for metric in re.findall(r"\b(?:vigil|process)_\w+", expr):
            assert metric in KNOWN_SERIES, (alert, metric)


# --- Alertmanager -------------------------------------------------------------------------------


def test_amtool_checks_alertmanager_config():
    proc = run(tool("amtool"), "check-config", "deploy/alertmanager/alertmanager.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alertmanager_sends_everything_to_ingest_with_resolved():
    cfg = load_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    assert cfg["route"]["receiver"] == "vigil"
    assert not cfg["route"].get("routes")
    (receiver,) = cfg["receivers"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == "http://ingest:8081/api/v1/webhooks/alertmanager"
    assert webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
    # Ingest answers a larger notification with 413, which Alertmanager never retries.
    assert 0 < webhook["max_alerts"] <= Settings.model_fields["ingest_max_alerts"].default


def test_the_documented_alertmanager_config_keeps_within_ingests_alert_limit():
    documented = (ROOT / "docs" / "ingest.md").read_text().split("## Alertmanager", 1)[1].split("```yaml", 1)[1]
    (receiver,) = yaml.safe_load(documented.split("```", 1)[0])["receivers"]
    (webhook,) = receiver["webhook_configs"]
    assert 0 < webhook["max_alerts"] <= Settings.model_fields["ingest_max_alerts"].default


# --- Grafana ------------------------------------------------------------------------------------


def dashboard_targets():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "vigil.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_dashboard_queries_only_known_metrics_and_shows_every_vigil_metric():
    datasources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml")
    uids = {ds["type"]: ds["uid"] for ds in datasources["datasources"]}
    seen = set()
    for panel, target in dashboard_targets():
        assert panel["datasource"]["uid"] == uids["prometheus"], panel["title"]
        names = set(re.findall(r"\b(?:vigil_\w+|process_\w+|up)\b(?=\s*[{\[)])", target["expr"]))
        assert names, (panel["title"], target["expr"])
        assert names <= KNOWN_SERIES, (panel["title"], names - KNOWN_SERIES)
        seen |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    assert set(VIGIL_METRICS) <= seen


def test_every_metric_the_services_define_is_known_here_and_so_on_the_dashboard():
    proc = subprocess.run(
        [sys.executable, "-c", DEFINED_METRICS_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == VIGIL_METRICS


def test_grafana_provisioning_points_at_the_stack():
    datasources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml")
    urls = {ds["type"]: ds["url"] for ds in datasources["datasources"]}
    assert urls == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100"}
    for path in (DEPLOY / "grafana" / "provisioning" / "dashboards").glob("*.yml"):
        (provider,) = load_yaml(path)["providers"]
        assert provider["options"]["path"] == "/etc/grafana/dashboards"


# --- Loki and promtail --------------------------------------------------------------------------


def test_loki_config_parses():
    cfg = load_yaml(DEPLOY / "loki" / "loki.yml")
    assert cfg["server"]["http_listen_port"] == 3100
    assert cfg["schema_config"]["configs"][-1]["schema"] == "v13"
    assert cfg["compactor"]["retention_enabled"] is True


def promtail_jobs() -> dict:
    cfg = load_yaml(DEPLOY / "promtail" / "promtail.yml")
    assert cfg["clients"][0]["url"] == "http://loki:3100/loki/api/v1/push"
    return {job["job_name"]: job for job in cfg["scrape_configs"]}


def pipeline(stages, filename):
    """Promtail's regex -> labels stages for one file, as flat lists (match selectors on filename)."""
    regexes, labels = [], []
    for stage in stages:
        if "regex" in stage:
            regexes.append(re.compile(stage["regex"]["expression"]))
        elif "labels" in stage:
            labels.extend(stage["labels"])
        elif "match" in stage:
            pattern = re.search(r'filename=~"([^"]+)"', stage["match"]["selector"]).group(1)
            if re.fullmatch(pattern, filename):
                sub_regexes, sub_labels = pipeline(stage["match"]["stages"], filename)
                regexes += sub_regexes
                labels += sub_labels
    return regexes, labels


def extract(job, filename, line):
    regexes, labels = pipeline(job["pipeline_stages"], filename)
    found = {}
    for regex in regexes:
        if match := regex.search(line):
            found.update(match.groupdict())
    return {k: v for k, v in found.items() if k in labels}


def test_promtail_ships_system_fail2ban_and_xray_logs():
    jobs = promtail_jobs()
    paths = {name: {sc["labels"]["__path__"] for sc in job["static_configs"]} for name, job in jobs.items()}
    assert paths == {
        "varlogs": {"/var/log/*log"},
        "fail2ban": {"/var/log/fail2ban.log"},
        "xray": {"/var/log/xray/*.log", "/usr/local/x-ui/*.log"},
    }
    for name, job in jobs.items():
        for sc in job["static_configs"]:
            assert sc["labels"]["job"] == name
            assert sc["labels"]["host"] == "${VIGIL_HOST_NAME}"


@pytest.mark.parametrize(
    ("job", "filename", "line", "labels"),
    [
        (
            "varlogs",
            "/var/log/auth.log",
            "Sep  1 12:00:00 vpn-1 sshd[4242]: Failed password for root from 203.0.113.7 port 5022 ssh2",
            {"program": "sshd"},
        ),
        (
            "varlogs",
            "/var/log/syslog",
            "2024-09-01T12:00:00.123456+00:00 vpn-1 systemd[1]: Started session-5.scope.",
            {"program": "systemd"},
        ),
        (
            "fail2ban",
            "/var/log/fail2ban.log",
            "2024-09-01 12:00:00,123 fail2ban.actions        [812]: NOTICE  [sshd] Ban 203.0.113.7",
            {"level": "NOTICE", "jail": "sshd", "action": "Ban"},
        ),
        (
            "fail2ban",
            "/var/log/fail2ban.log",
            "2024-09-01 12:00:00,456 fail2ban.filter         [812]: INFO    [sshd] Found 203.0.113.7 - 2024-09-01",
            {"level": "INFO", "jail": "sshd", "action": "Found"},
        ),
        (
            "fail2ban",
            "/var/log/fail2ban.log",
            "2024-09-01 12:00:00,789 fail2ban.server         [812]: INFO    Starting Fail2ban v1.0.2",
            {"level": "INFO"},
        ),
        (
            "xray",
            "/var/log/xray/access.log",
            "2024/09/01 12:00:00.123456 from 203.0.113.7:51234 accepted tcp:example.com:443 [in >> direct] email: u1",
            {"status": "accepted"},
        ),
        (
            "xray",
            "/var/log/xray/error.log",
            "2024/09/01 12:00:00 [Warning] [3307281] app/proxyman/inbound: connection ends > EOF",
            {"level": "Warning"},
        ),
        (
            "xray",
            "/usr/local/x-ui/x-ui.log",
            "2024/09/01 12:00:00 WARNING - failed to fetch traffic from 203.0.113.7",
            {"level": "WARNING"},
        ),
    ],
)
def test_promtail_extracts_few_labels_and_never_addresses(job, filename, line, labels):
    assert extract(promtail_jobs()[job], filename, line) == labels


def test_promtail_labels_are_bounded():
    allowed = {"program", "level", "jail", "action", "status"}
    for job in promtail_jobs().values():
        for filename in ("/var/log/syslog", "/var/log/xray/access.log", "/usr/local/x-ui/x-ui.log"):
            _, labels = pipeline(job["pipeline_stages"], filename)
            assert set(labels) <= allowed, (job["job_name"], labels)


def test_the_rabbitmq_cluster_profile_joins_two_nodes_to_the_first_and_the_services_know_all_three():
    cfg = services()["services"]
    conf = (DEPLOY / "rabbitmq" / "join-cluster.conf").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    assert "cluster_formation.classic_config.nodes.1 = rabbit@rabbitmq" in conf
    first = cfg["rabbitmq"]
    assert first["hostname"] == "rabbitmq" and "profiles" not in first  # the seed, as in the default deployment
    for name in ("rabbitmq-2", "rabbitmq-3"):
        node = cfg[name]
        assert node["hostname"] == name and node["image"] == first["image"]
        assert node["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        mounts = {tuple(v.split(":")) for v in node["volumes"]}
        assert (f"{name}-data", "/var/lib/rabbitmq", "rw") in mounts  # its own data
        assert ("rabbitmq-data", "/seed", "ro") in mounts  # the first node's cookie, read-only
        conf_path = str(DEPLOY / "rabbitmq" / "join-cluster.conf")
        assert (conf_path, "/etc/rabbitmq/conf.d/20-join-cluster.conf", "ro") in mounts
        assert "/seed/.erlang.cookie /var/lib/rabbitmq/.erlang.cookie" in node["entrypoint"][-1]
        assert node["environment"]["RABBITMQ_DEFAULT_PASS"] == "test-rabbitmq_password"
    for name in VIGIL_PORTS:
        urls = broker_urls.split(cfg[name]["environment"]["VIGIL_AMQP_URL"])
        assert [u.split("@")[1] for u in urls] == ["rabbitmq:5672/", "rabbitmq-2:5672/", "rabbitmq-3:5672/"], name
        assert all(u.startswith("amqp://vigil:test-rabbitmq_password@") for u in urls), name
