"""The deployment files: compose file against the Compose Specification, nginx routing,
entrypoint roles, Dockerfile and gunicorn settings. No Docker engine or network needed."""

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
WEB_SERVICES = ("portal", "identity", "interpret", "consult", "search", "press")
ALL_SERVICES = {"postgres", "redis", "elasticsearch", "migrate", *WEB_SERVICES, "worker", "beat", "nginx"}
ROLES = {"web", "worker", "beat", "migrate"}


# --- docker-compose.yml ----------------------------------------------------------------------


def load_compose():
    return YAML(typ="safe", pure=True).load(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def compose():
    return load_compose()


@pytest.fixture(scope="module")
def compose_validator():
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)  # the draft the schema declares
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(validator, document):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose, compose_validator):
    assert schema_errors(compose_validator, compose) == []


def test_schema_check_is_not_vacuous(compose_validator):
    broken = load_compose()
    broken["services"]["portal"]["restart_policy"] = "always"
    broken["services"]["worker"]["depends_on"]["redis"]["condition"] = 7
    assert len(schema_errors(compose_validator, broken)) >= 2


def test_compose_has_every_service_and_no_version_key(compose):
    assert "version" not in compose
    assert set(compose["services"]) >= ALL_SERVICES
    for name, service in compose["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure", "no"), name


def test_backing_services(compose):
    services = compose["services"]
    postgres, redis, es = services["postgres"], services["redis"], services["elasticsearch"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])

    assert redis["image"].startswith("redis:7")
    assert " ".join(redis["command"]).count("--appendonly yes") == 1
    assert redis["healthcheck"]["test"]

    assert re.fullmatch(r"docker\.elastic\.co/elasticsearch/elasticsearch:8\.\d+\.\d+", es["image"])
    env = es["environment"]
    assert env["discovery.type"] == "single-node"
    assert re.fullmatch(r"\$\{ES_SECURITY_ENABLED:-(true|false)\}", env["xpack.security.enabled"])
    assert re.search(r"-Xms\S+ -Xmx\S+", env["ES_JAVA_OPTS"])
    assert es["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
    assert es["healthcheck"]["test"]
    assert es["volumes"]


def test_app_services(compose):
    services = compose["services"]
    healthy = {"condition": "service_healthy"}
    migrated = {"condition": "service_completed_successfully"}

    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"] == healthy

    image_healthcheck = re.search(r"^HEALTHCHECK .*/healthz", dockerfile_text(), re.M)
    for name in WEB_SERVICES:
        service = services[name]
        assert service["command"] == ["web"], name
        assert service["environment"]["GONGKAI_SERVICE"] == name
        assert service["depends_on"]["migrate"] == migrated, name
        assert service["depends_on"]["redis"] == healthy, name
        assert service["depends_on"]["elasticsearch"] == healthy, name
        own = service.get("healthcheck")
        if own is not None:
            assert not own.get("disable"), name
            assert own.get("test"), name
        else:  # inherits the image's HEALTHCHECK
            assert service.get("build") == ".", name
            assert image_healthcheck, name

    assert services["worker"]["command"] == ["worker"]
    beat = services["beat"]
    assert beat["command"] == ["beat"]
    assert beat.get("scale", 1) == 1
    assert beat.get("deploy", {}).get("replicas", 1) == 1

    for name in ("migrate", "worker", "beat", *WEB_SERVICES):
        env = services[name]["environment"]
        for key in ("DATABASE_URL", "REDIS_URL", "SEARCH_URL", "SECRET_KEY", "GONGKAI_ENV"):
            assert key in env, (name, key)
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")

    nginx = services["nginx"]
    assert nginx["image"] == "nginx:1.27-alpine"
    assert any(str(p).endswith(":80") and "8000" in str(p) for p in nginx["ports"])
    assert any(v.startswith("./deploy/nginx.conf:/etc/nginx/nginx.conf") for v in nginx["volumes"])


# --- deploy/nginx.conf -----------------------------------------------------------------------


def parse_nginx():
    text = re.sub(r"#[^\n]*", "", (DEPLOY / "nginx.conf").read_text())
    upstreams = {
        name: re.findall(r"\bserver\s+([\w.-]+):(\d+)", body)
        for name, body in re.findall(r"\bupstream\s+(\w+)\s*\{([^{}]*)\}", text)
    }
    locations = []
    for m in re.finditer(r"\blocation\s+(?:(=|\^~|~\*?)\s+)?(\S+)\s*\{([^{}]*)\}", text):
        modifier, pattern, body = m.groups()
        target = re.search(r"\bproxy_pass\s+http://(\w+)", body)
        returned = re.search(r"\breturn\s+(\d{3})", body)
        locations.append(
            SimpleNamespace(
                modifier=modifier,
                pattern=pattern,
                upstream=target and target.group(1),
                status=returned and int(returned.group(1)),
            )
        )
    return text, upstreams, locations


def nginx_match(locations, path):
    """nginx's choice: exact match, else longest prefix unless a regex matches (and the prefix is not ^~)."""
    for loc in locations:
        if loc.modifier == "=" and loc.pattern == path:
            return loc
    prefixes = [loc for loc in locations if loc.modifier in (None, "^~") and path.startswith(loc.pattern)]
    best = max(prefixes, key=lambda loc: len(loc.pattern), default=None)
    if best is None or best.modifier != "^~":
        for loc in locations:
            if loc.modifier in ("~", "~*") and re.search(loc.pattern, path, re.I if loc.modifier == "~*" else 0):
                return loc
    return best


ROUTES = {
    "/": "portal",
    "/healthz": "portal",
    "/readyz": "portal",
    "/metrics": "portal",
    "/static/css/app.css": "portal",
    "/unknown/page": "portal",
    "/api/searchx": "portal",
    "/staff/": "identity",
    "/staff/login": "identity",
    "/api/auth/token": "identity",
    "/interpret/": "interpret",
    "/interpret/policies/12": "interpret",
    "/api/interpret/interpretations": "interpret",
    "/api/interpret/openapi.json": "interpret",
    "/consult/": "consult",
    "/consult/track": "consult",
    "/api/consult/consultations": "consult",
    "/api/consult/classify": "consult",
    "/search/": "search",
    "/api/search": "search",
    "/api/search/suggest": "search",
    "/press/": "press",
    "/api/press/hot-topics": "press",
}


def test_nginx_upstreams_point_at_the_web_services(compose):
    _, upstreams, _ = parse_nginx()
    assert set(upstreams) == set(WEB_SERVICES)
    for name, servers in upstreams.items():
        assert servers == [(name, "8000")]
        assert name in compose["services"]


@pytest.mark.parametrize(("path", "service"), sorted(ROUTES.items()))
def test_nginx_routes_each_path_to_its_service(path, service):
    _, _, locations = parse_nginx()
    loc = nginx_match(locations, path)
    assert loc is not None, path
    assert loc.upstream == service, (path, loc)


def test_nginx_search_api_is_exact_and_prefix():
    _, _, locations = parse_nginx()
    declared = {(loc.modifier, loc.pattern): loc.upstream for loc in locations}
    assert declared[("=", "/api/search")] == "search"
    assert declared[(None, "/api/search/")] == "search"


def test_nginx_bare_section_names_redirect():
    _, _, locations = parse_nginx()
    for path in ("/search", "/consult", "/interpret", "/press", "/staff"):
        loc = nginx_match(locations, path)
        assert loc.status == 301, path


def test_nginx_proxy_settings():
    text, _, _ = parse_nginx()
    assert re.search(r"\bclient_max_body_size\s+25m;", text)
    assert re.search(r"\bgzip\s+on;", text)
    assert "$request_id" in text
    assert re.search(r"proxy_set_header\s+X-Request-ID\s", text)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;", text)
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s", text)
    log_format = re.search(r"\blog_format\s[^;]*;", text).group(0)
    assert "$request_uri" not in log_format
    assert "$args" not in log_format
    assert "$uri" in log_format
    assert "ssl_certificate" in (DEPLOY / "nginx.conf").read_text()  # the commented TLS block


# --- deploy/entrypoint.sh and Dockerfile -----------------------------------------------------


def test_entrypoint_parses_with_bash():
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed to check the entrypoint"
    result = subprocess.run([bash, "-n", str(DEPLOY / "entrypoint.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_entrypoint_covers_every_role():
    text = (DEPLOY / "entrypoint.sh").read_text()
    assert text.startswith("#!")
    assert re.search(r"^set -eu\b", text, re.M)
    arms = {role for arm in re.findall(r"^\s*([\w|]+)\)", text, re.M) for role in arm.split("|")}
    assert arms >= ROLES
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)


@pytest.fixture
def stub_path(tmp_path):
    """A PATH whose gunicorn and gongkai print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gunicorn", "gongkai"):
        stub = bin_dir / name
        stub.write_text('#!/bin/sh\necho "$(basename "$0") $*"\n')
        stub.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"


def run_entrypoint(stub_path, *args, **env):
    full_env = {"PATH": stub_path, **env}
    return subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), *args], cwd=ROOT, env=full_env, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("web",), "gunicorn --config deploy/gunicorn.conf.py services.wsgi:app"),
        ((), "gunicorn --config deploy/gunicorn.conf.py services.wsgi:app"),
        (("worker",), "gongkai worker"),
        (("worker", "--loglevel", "info"), "gongkai worker --loglevel info"),
        (("beat",), "gongkai beat"),
        (("migrate",), "gongkai migrate"),
        (("gongkai", "create-admin", "--username", "a"), "gongkai create-admin --username a"),
    ],
)
def test_entrypoint_execs_the_role(stub_path, args, expected):
    result = run_entrypoint(stub_path, *args, GONGKAI_SERVICE="consult")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_entrypoint_rejects_unknown_role_and_service(stub_path):
    for args, env in ((("serve",), {}), (("web",), {"GONGKAI_SERVICE": "billing"})):
        result = run_entrypoint(stub_path, *args, **env)
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1


def test_entrypoint_clears_stale_prometheus_files(stub_path, tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"stale")
    result = run_entrypoint(stub_path, "web", PROMETHEUS_MULTIPROC_DIR=str(metrics))
    assert result.returncode == 0, result.stderr
    assert metrics.is_dir()
    assert not any(metrics.iterdir())


def dockerfile_text():
    """The Dockerfile with continuation lines joined."""
    return re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())


def test_dockerfile():
    text = dockerfile_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm\b|^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["deploy/entrypoint\.sh"\]$', text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users
    assert users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*python.*/healthz", text, re.M)
    assert "pip install" in text
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert ignored >= {".git", ".venv", ".env"}


# --- deploy/gunicorn.conf.py -----------------------------------------------------------------

GUNICORN_ENV = ("GONGKAI_BIND", "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR", "GUNICORN_THREADS")

PROBE = """
import importlib.util, json, sys, types
spec = importlib.util.spec_from_file_location("gunicorn_conf", sys.argv[1])
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
if hasattr(conf, "child_exit"):
    conf.child_exit(None, types.SimpleNamespace(pid=424242))
print(json.dumps({name: getattr(conf, name, None) for name in
      ("bind", "workers", "threads", "timeout", "graceful_timeout", "max_requests",
       "max_requests_jitter", "forwarded_allow_ips", "accesslog")} | {"child_exit": hasattr(conf, "child_exit")}))
"""


def gunicorn_settings(**env):
    base = {k: v for k, v in os.environ.items() if k not in GUNICORN_ENV}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(DEPLOY / "gunicorn.conf.py")],
        env={**base, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gunicorn_defaults():
    conf = gunicorn_settings()
    assert conf["bind"] in ("0.0.0.0:8000", ["0.0.0.0:8000"])
    assert 3 <= conf["workers"] <= 16
    assert conf["threads"] >= 1
    assert conf["timeout"] > conf["graceful_timeout"] > 0
    assert conf["max_requests"] > conf["max_requests_jitter"] > 0
    assert conf["forwarded_allow_ips"]
    assert conf["accesslog"] == "-"
    assert conf["child_exit"] is False


def test_gunicorn_reads_the_environment(tmp_path):
    conf = gunicorn_settings(GONGKAI_BIND="127.0.0.1:9001", WEB_CONCURRENCY="5", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert conf["bind"] in ("127.0.0.1:9001", ["127.0.0.1:9001"])
    assert conf["workers"] == 5
    assert conf["child_exit"] is True


def test_gunicorn_access_log_is_json_without_query_string(monkeypatch):
    from gunicorn.config import Config

    for key in GUNICORN_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GONGKAI_SERVICE", "search")
    spec = importlib.util.spec_from_file_location("gunicorn_conf_inproc", DEPLOY / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)

    cfg = Config()
    cfg.set("accesslog", "-")
    logger = conf.logger_class(cfg)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.access_log.addHandler(handler)
    secret = "q=%E5%BC%A0%E4%B8%89&phone=13800000000"
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/search/政策".encode().decode("latin-1"),
        "QUERY_STRING": secret,
        "RAW_URI": f"/search/?{secret}",
        "REMOTE_ADDR": "10.0.0.5",
        "HTTP_X_REQUEST_ID": "req-1",
        "HTTP_REFERER": f"https://example.gov.cn/search/?{secret}",
    }
    response = SimpleNamespace(status="200 OK", sent=512, headers=[])
    logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=12))
    logger.access(response, SimpleNamespace(headers=[]), {**environ, "PATH_INFO": "/healthz"}, timedelta(0))

    assert len(records) == 1, records  # the healthy probe is not logged
    assert "13800000000" not in records[0]
    assert "%E5" not in records[0]
    entry = json.loads(records[0])
    assert entry["path"] == "/search/政策"
    assert entry["status"] == 200
    assert entry["request_id"] == "req-1"
    assert entry["service"] == "search"
