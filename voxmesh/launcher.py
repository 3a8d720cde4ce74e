"""Start the whole VoxMesh stack as local processes and wait until it serves.

Used by ``voxmesh up`` and by the test suite, so the tests exercise exactly
what a newcomer runs. Every process is a real server: Redis (a ``redis-server`` 7.0 or
later with the shipped ACL users, see :mod:`voxmesh.local_redis`), the embedded llama.cpp
OpenAI-compatible server (unless an LLM endpoint is configured), the four
gRPC services and the gateway. Only the gateway binds ``host``; the gRPC services bind
``services_host`` (loopback by default), Redis (always with passwords) and the llama.cpp
server bind loopback whatever either says.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from voxmesh import config, local_redis, models
from voxmesh.redis_version import RedisVersionError
from voxmesh.tls import open_channel

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """A process of the stack failed to start; the message says which and why."""


# Below Linux's ephemeral range (32768-60999): a port the kernel picked with bind(0) can be
# reused as the source port of an outgoing connection before our server binds it.
_PICK_RANGE = (20_000, 32_000)
_handed_out: set[int] = set()
_rng = random.SystemRandom()  # immune to tests seeding the global generator


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now on ``host`` and not handed out before."""
    for _ in range(200):
        port = _rng.randint(*_PICK_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # a crowded range: let the kernel choose
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


LOOPBACK = "127.0.0.1"
"""Where the launcher's Redis and llama.cpp server listen, whatever ``--host`` says."""


def _dialable(host: str) -> str:
    """An address to dial for a server bound to ``host`` (a wildcard means this machine)."""
    return {"0.0.0.0": LOOPBACK, "": LOOPBACK, "::": "::1"}.get(host, host)


@dataclass
class Ports:
    """Where each part of the stack listens."""

    gateway: int = config.GATEWAY_PORT
    orchestrator: int = config.ORCHESTRATOR_PORT
    stt: int = config.STT_PORT
    llm: int = config.LLM_PORT
    tts: int = config.TTS_PORT
    redis: int = 6379
    llm_server: int = 8081

    @classmethod
    def random(cls) -> Ports:
        """Ports picked at run time, for tests that run beside other stacks."""
        return cls(*(free_port() for _ in range(7)))


@dataclass
class Proc:
    """A started process and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Stack:
    """The local stack: configure, :meth:`start`, use, :meth:`stop`."""

    ports: Ports = field(default_factory=Ports)
    # Where the gateway binds. The gRPC services bind services_host: they trust the identity
    # the gateway asserts, so they stay on loopback unless asked. Redis and the llama.cpp
    # server serve only this machine's processes: always loopback.
    host: str = "127.0.0.1"
    services_host: str = "127.0.0.1"
    state_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "voxmesh")
    # The Redis to use (its admin when the launcher starts it); empty: start one.
    redis_url: str = ""
    # Per service (orchestrator, llm, auditor), the user it logs in as on the launcher's
    # Redis; a service not named here gets redis_url.
    redis_urls: dict[str, str] = field(default_factory=dict)
    llm_base_url: str = ""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = ("stt", "tts", "llm", "orchestrator", "gateway")
    # The gateway's API key (POST /v1/sessions); VOXMESH_API_KEY, else a new random one.
    api_key: str = field(
        default_factory=lambda: os.environ.get("VOXMESH_API_KEY") or secrets.token_urlsafe(32))
    procs: list[Proc] = field(default_factory=list)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        """The page a person opens."""
        return f"http://{self.host}:{self.ports.gateway}/"

    def addr(self, service: str) -> str:
        """host:port of a gRPC service, to dial from this machine."""
        host = _dialable(self.services_host)
        return f"{f'[{host}]' if ':' in host else host}:{getattr(self.ports, service)}"

    def redis_passwords(self) -> dict[str, str]:
        """The passwords of the ACL users of the Redis this launcher starts (made once per
        state directory, file mode 0600: :func:`voxmesh.local_redis.passwords`)."""
        try:
            return local_redis.passwords(self.state_dir)
        except ValueError as exc:
            raise LaunchError(str(exc)) from None

    # -- start -----------------------------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> None:
        """Start every process and block until all report healthy, or raise LaunchError."""
        deadline = time.monotonic() + timeout_s
        self._tls()  # bad VOXMESH_TLS_* settings fail here, before any process starts
        try:
            if not self.redis_url and {"orchestrator", "llm"} & set(self.services):
                self.redis_url = self._start_redis()
            if not self.llm_base_url and "llm" in self.services:
                self.llm_base_url = self._start_llm_server()
            grpc_services = [s for s in ("stt", "tts", "llm") if s in self.services]
            for name in grpc_services:
                self._spawn(name, [sys.executable, "-m", f"services.{name}"])
            for name in grpc_services:
                self._wait_grpc(name, deadline)
            if "orchestrator" in self.services:
                self._spawn("orchestrator", [sys.executable, "-m", "services.orchestrator"])
                self._wait_grpc("orchestrator", deadline)
            if "gateway" in self.services:
                self._spawn("gateway", [sys.executable, "-m", "gateway"])
                self._wait_http("gateway", f"http://{self.host}:{self.ports.gateway}/healthz",
                                deadline)
        except BaseException:
            self.stop()
            raise

    def restart(self, name: str, kill: bool = False, timeout_s: float = 120.0) -> None:
        """Stop one service (SIGTERM, or SIGKILL with ``kill``: it dies mid-work), start it
        again on the same port, and wait until it is ready."""
        proc = self._proc(name)
        if proc.popen.poll() is None:
            proc.popen.kill() if kill else proc.popen.send_signal(signal.SIGTERM)
        proc.popen.wait(timeout=30)
        self.procs.remove(proc)
        deadline = time.monotonic() + timeout_s
        module = "gateway" if name == "gateway" else f"services.{name}"
        self._spawn(name, [sys.executable, "-m", module])
        if name == "gateway":
            self._wait_http(name, f"http://{self.host}:{self.ports.gateway}/healthz", deadline)
        else:
            self._wait_grpc(name, deadline)

    def _env(self, name: str = "") -> dict[str, str]:
        """The environment of process ``name`` (only the gateway binds ``host``)."""
        p = self.ports
        env = dict(os.environ)
        # Model hubs are unreachable: never let a library try one.
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.update(
            VOXMESH_HOST=self.host if name == "gateway" else self.services_host,
            VOXMESH_STT_PORT=str(p.stt),
            VOXMESH_LLM_PORT=str(p.llm),
            VOXMESH_TTS_PORT=str(p.tts),
            VOXMESH_ORCHESTRATOR_PORT=str(p.orchestrator),
            VOXMESH_GATEWAY_PORT=str(p.gateway),
            VOXMESH_ORCHESTRATOR_STT_ADDR=self.addr("stt"),
            VOXMESH_ORCHESTRATOR_LLM_ADDR=self.addr("llm"),
            VOXMESH_ORCHESTRATOR_TTS_ADDR=self.addr("tts"),
            VOXMESH_ORCHESTRATOR_REDIS_URL=self.redis_urls.get("orchestrator", self.redis_url),
            VOXMESH_GATEWAY_ORCHESTRATOR_ADDR=self.addr("orchestrator"),
            VOXMESH_LLM_BASE_URL=self.llm_base_url,
            VOXMESH_LLM_STATE_DIR=str(self.state_dir),  # where the booking database lives
            VOXMESH_LLM_REDIS_URL=self.redis_urls.get("llm", self.redis_url),  # memory
            VOXMESH_API_KEY=self.api_key,
        )
        for name in ("stt", "llm", "tts", "orchestrator"):
            if name not in self.metrics_ports:  # chosen once: every process must agree
                port = getattr(p, name)
                default = config.metrics_port_for(port)
                if port != getattr(config, f"{name.upper()}_PORT"):
                    default = free_port(self.services_host)  # test stacks: not 910x
                self.metrics_ports[name] = int(
                    env.get(f"VOXMESH_{name.upper()}_METRICS_PORT", default))
            env[f"VOXMESH_{name.upper()}_METRICS_PORT"] = str(self.metrics_ports[name])
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log_path = self.state_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "wb")  # noqa: SIM115 - handed to the child
        if argv[1:2] == ["-m"]:  # Python parts stop by themselves if the launcher dies
            argv = [argv[0], "-m", "voxmesh.leash", *argv[2:]]
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=self._env(name),
            cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
        )
        out.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def _start_redis(self) -> str:
        """Start redis-server >= 7 with the shipped ACL users; the admin's URL.

        The services get their own users' URLs (:attr:`redis_urls`).
        """
        try:
            binary = local_redis.find_binary()
            users = self.redis_passwords()
            aclfile = local_redis.write_acl(self.state_dir, users)
        except (RedisVersionError, ValueError, OSError) as exc:
            raise LaunchError(str(exc)) from None
        data_dir = self.state_dir / f"redis-{self.ports.redis}"
        data_dir.mkdir(parents=True, exist_ok=True)
        # Passwords live in the 0600 state files (the ACL holds their hashes), not in argv,
        # which any local user can read.
        self._spawn("redis", [
            binary, "--port", str(self.ports.redis), "--bind", LOOPBACK, "--dir", str(data_dir),
            "--aclfile", str(aclfile), "--appendonly", "yes", "--save", "", "--daemonize", "no",
        ])
        # The orchestrator's user answering proves the ACL file loaded, not just the server.
        probe = f"AUTH voxmesh-orchestrator {users['orchestrator']}\r\nPING\r\n".encode()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self._check_alive("redis")
            try:
                with socket.create_connection((LOOPBACK, self.ports.redis), timeout=0.5) as s:
                    s.sendall(probe)
                    reply = b""
                    while len(reply) < 12 and (chunk := s.recv(64)):
                        reply += chunk
                    if reply.startswith(b"+OK\r\n+PONG"):
                        self.redis_urls = {
                            user: local_redis.url(user, password, LOOPBACK, self.ports.redis)
                            for user, password in users.items() if user != "admin"}
                        return local_redis.url("admin", users["admin"], LOOPBACK,
                                               self.ports.redis)
            except OSError:
                pass
            time.sleep(0.1)
        raise LaunchError(self._failure("redis", "did not let voxmesh-orchestrator in (AUTH, "
                                                 "PING) in 15 s: did the ACL file load?"))

    def _start_llm_server(self) -> str:
        model_path = models.smollm2_gguf_path()
        self._spawn("llm-server", [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
            "--model_alias", "smollm2", "--host", LOOPBACK,
            "--port", str(self.ports.llm_server), "--n_ctx", "4096",
            # The dialogue service classifies a turn while its reply starts: queue the
            # second request rather than abort the first (the server's default).
            "--interrupt_requests", "False",
        ])
        base = f"http://{LOOPBACK}:{self.ports.llm_server}/v1"
        self._wait_http("llm-server", f"{base}/models", time.monotonic() + 120)
        return base

    # -- readiness -------------------------------------------------------------------------

    def _proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def _failure(self, name: str, why: str) -> str:
        proc = self._proc(name)
        tail = proc.log_path.read_text(errors="replace").splitlines()[-25:]
        return f"{name} {why}; last lines of {proc.log_path}:\n" + "\n".join(tail)

    def _check_alive(self, name: str) -> None:
        code = self._proc(name).popen.poll()
        if code is not None:
            raise LaunchError(self._failure(name, f"exited with code {code}"))

    def _tls(self) -> config.TlsSettings:
        """The TLS settings the launched processes get (extra_env included), so that health
        checks dial them as their peers do."""
        try:
            return config.TlsSettings.from_env(self._env())
        except ValidationError as err:
            raise LaunchError(f"bad TLS settings: {err}") from None

    def _wait_grpc(self, name: str, deadline: float) -> None:
        with open_channel(self.addr(name), self._tls()) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                self._check_alive(name)
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise LaunchError(self._failure(name, "was not SERVING in time"))

    def _wait_http(self, name: str, url: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise LaunchError(self._failure(name, f"did not answer {url} in time"))

    # -- stop ------------------------------------------------------------------------------

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every process (newest first), wait, then SIGKILL stragglers."""
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self.procs.clear()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
