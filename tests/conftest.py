"""Fixtures shared by the suite: real service processes on loopback ports chosen at run time."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from voxmesh.launcher import Ports, Stack

# Model hubs are unreachable here and in CI: fail loudly instead of hanging on a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

StackFactory = Callable[..., Stack]


@pytest.fixture(scope="module")
def stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    """Start a :class:`Stack` of the named services on random ports; they stop when the
    test module ends (each dialogue service holds an embedding model: keeping every
    module's stacks to the end of the session once ran the machine out of memory).

    Example: ``stack_factory(services=("stt",))`` starts only the STT service.
    """
    started: list[Stack] = []

    def start(**kwargs: object) -> Stack:
        state_dir = Path(tmp_path_factory.mktemp("stack"))
        stack = Stack(ports=Ports.random(), state_dir=state_dir, **kwargs)  # type: ignore[arg-type]
        stack.start()
        started.append(stack)
        return stack

    yield start
    for stack in reversed(started):  # dependants (started later) first
        stack.stop()
