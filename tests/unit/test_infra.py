"""infra/ checked statically (no Docker engine here): the compose file and the Dockerfile hold together.

The compose file must parse, refer only to files that exist, take every secret from the env file
(no default passwords), and give each long-running service a healthcheck; the Dockerfile must
install from uv.lock and run as a non-root user.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
INFRA = PROJECT_DIR / "infra"
COMPOSE = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
DOCKERFILE = (INFRA / "Dockerfile").read_text()
ONE_SHOT = {"airflow-init"}  # services that run once and exit


def test_compose_parses_and_names_the_prod_services() -> None:
    services = set(COMPOSE["services"])
    assert {"postgres", "redis", "mlflow", "airflow-api-server", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "feature-server",
            "model-server"} <= services


def test_compose_refers_only_to_files_that_exist() -> None:
    for name, service in COMPOSE["services"].items():
        build = service.get("build")
        if build:
            context = (INFRA / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):  # a bind mount, not a named volume
                assert (INFRA / source).exists(), f"{name}: {source}"
            else:
                assert source in COMPOSE.get("volumes", {}), f"{name}: undeclared volume {source}"


def test_paths_in_commands_exist_in_the_project() -> None:
    """The image holds the project at /app: every /app/... a command names must be in the repo."""
    text = (INFRA / "docker-compose.yml").read_text()
    for path in re.findall(r"/app/([\w./-]+\.(?:yaml|yml|py|toml))", text):
        assert (PROJECT_DIR / path).is_file(), f"infra/docker-compose.yml names /app/{path}, not in the repo"


def test_compose_takes_every_secret_from_the_env_file() -> None:
    text = (INFRA / "docker-compose.yml").read_text()
    for match in re.finditer(r"(\w*(?:PASSWORD|SECRET|_KEY)\w*):\s*(\S+)", text):
        if match.group(1).endswith("_FILE"):
            continue  # where a secret is kept, not the secret
        value = match.group(2)
        assert value.startswith("${") and ":?" in value, f"{match.group(0)}: not required from the env"
    example = (INFRA / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    documented = set(re.findall(r"^(\w+)=", example, flags=re.M))
    assert required <= documented, f"missing from infra/.env.example: {sorted(required - documented)}"
    assert all(not v.strip() for v in re.findall(r"^\w*(?:PASSWORD|SECRET)\w*=(.*)$", example, flags=re.M)), (
        "infra/.env.example must not ship values for passwords or secrets")


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in COMPOSE["services"].items():
        if name not in ONE_SHOT:
            assert "healthcheck" in service, name


def test_dockerfile_installs_from_the_lock_and_runs_unprivileged() -> None:
    assert DOCKERFILE.count("FROM ") >= 2  # multi-stage: no build tools in the final image
    assert "uv sync --locked" in DOCKERFILE and "uv lock" not in DOCKERFILE
    assert "--no-dev" in DOCKERFILE
    users = re.findall(r"^USER (\S+)", DOCKERFILE, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    local_copies = [line for line in DOCKERFILE.splitlines()
                    if line.startswith("COPY ") and "--from=" not in line]
    for source in (re.match(r"^COPY (?:--\S+ )*(.+) \S+$", line).group(1) for line in local_copies):
        for path in source.split():
            assert (PROJECT_DIR / path).exists(), f"Dockerfile copies missing {path}"


def test_compose_and_glue_services_give_mlflow_the_same_default_permission() -> None:
    """One prod service set: the compose file's MLflow auth config says what `glue services` writes."""
    from glue import services

    compose = (INFRA / "docker-compose.yml").read_text()
    found = re.findall(r"default_permission = (\w+)", compose)
    assert found == [services.MLFLOW_DEFAULT_PERMISSION] == ["NO_PERMISSIONS"]


def test_compose_and_glue_services_give_airflow_the_same_auth_manager() -> None:
    """One prod service set: users and roles of the FAB auth manager in both, nothing of SimpleAuthManager."""
    from glue.adapters import airflow

    env = COMPOSE["x-airflow-env"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == airflow.FAB_AUTH_MANAGER
    assert not [name for name in env if "SIMPLE_AUTH_MANAGER" in name]
    assert "airflow users create --role Admin" in " ".join(COMPOSE["services"]["airflow-init"]["command"])
