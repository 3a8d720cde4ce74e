"""README command 1: ``voxmesh up`` starts everything on embedded defaults and stops on Ctrl-C.

No LLM endpoint is configured, so this runs the embedded llama.cpp server with the
SmolLM2 model from its PyPI package, exactly as a newcomer's first run does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import rms
from voxmesh.client import RealtimeClient
from voxmesh.launcher import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def voxmesh_up(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[str], str, Path, str]]:
    state_dir = tmp_path_factory.mktemp("up")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VOXMESH_")}  # embedded defaults only
    gateway, redis_port = free_port(), free_port()
    env.update({f"VOXMESH_{name}_PORT": str(free_port())
                for name in ("ORCHESTRATOR", "STT", "LLM", "TTS")})
    # Bound beyond loopback, as `voxmesh up --host 0.0.0.0` on a shared network would be.
    argv = [sys.executable, "-m", "voxmesh.cli", "up", "--host", "0.0.0.0",
            "--port", str(gateway), "--redis-port", str(redis_port),
            "--llm-server-port", str(free_port()), "--state-dir", str(state_dir)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    output: list[str] = []
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith("Open http"):
            break
    url_line = output[-1] if output else ""
    if not url_line.startswith("Open http"):
        proc.kill()
        pytest.fail("voxmesh up did not print the URL:\n" + "".join(output))
    url = url_line.split()[1]
    # No VOXMESH_API_KEY was given: `up` generated one and printed it.
    key_line = next(line for line in output if line.strip().startswith("api key"))
    # It says what other machines can reach (the gateway only), and never prints the
    # password of the Redis it started.
    printed = "".join(output)
    assert f"exposed on 0.0.0.0:{gateway}: gateway" in printed, printed
    assert f"loopback only: redis :{redis_port} (password required)" in printed, printed
    assert "redis://voxmesh-admin:***@127.0.0.1:" in printed, printed
    assert "services log in as their own ACL users" in printed, printed
    # A client on the network would reach the gateway; Redis refuses anyone without the
    # password.
    with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64).startswith(b"-NOAUTH"), "Redis answered without credentials"
    yield proc, url.replace("0.0.0.0", "127.0.0.1"), state_dir, key_line.split()[2]
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stdout.close()


async def test_up_serves_the_page_and_answers_with_the_embedded_model(
        voxmesh_up: tuple[subprocess.Popen[str], str, Path, str]) -> None:
    _, url, _, api_key = voxmesh_up
    assert url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as http:
        page = await http.get(url)
    assert page.status_code == 200 and "<html" in page.text.lower()

    ws_url = url.replace("http://", "ws://").rstrip("/") + "/v1/realtime"
    async with RealtimeClient(ws_url, api_key=api_key) as client:
        started = await client.start()
        assert started["type"] == "session.started"
        await client.send("input_text", text="Hello! Who are you?")
        done = await client.wait_for(lambda e: e["type"] == "response.done", 90)
    reply = "".join(e["delta"] for e in client.received.of_type("response.text"))
    assert done["status"] == "completed", client.received.events
    assert len(reply.split()) >= 2, reply
    assert rms(client.received.audio_bytes()) > 0.02


def test_ctrl_c_stops_every_process(
        voxmesh_up: tuple[subprocess.Popen[str], str, Path, str]) -> None:
    proc, _, state_dir, _ = voxmesh_up
    logs = sorted(p.stem for p in (state_dir / "logs").glob("*.log"))
    assert logs == ["gateway", "llm", "llm-server", "orchestrator", "redis", "stt", "tts"]
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    child_pids = [int(pid) for pid in children.stdout.split()]
    assert len(child_pids) == 7
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    rest = proc.stdout.read() if proc.stdout else ""
    assert "stopping" in rest
    for pid in child_pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"process {pid} still runs"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False
