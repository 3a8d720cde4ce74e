"""The ``voxmesh`` command: ``voxmesh up`` runs the whole stack locally."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from voxmesh import config, local_redis
from voxmesh.launcher import LOOPBACK, LaunchError, Ports, Stack

UP_HELP = """\
Start Redis, the embedded LLM server, the STT, LLM, TTS and orchestrator gRPC
services and the gateway on this machine, wait until every one reports
SERVING, and print the URL to open. Ctrl-C stops everything.

Environment (each optional):
  VOXMESH_REDIS_URL      use this Redis (7.0 or later) instead of starting one;
                         unset starts the system redis-server, which must be 7.0
                         or later (the audit log's tamper checks need it)
  VOXMESH_LLM_BASE_URL   OpenAI-compatible endpoint; unset starts llama.cpp with
                         the bundled SmolLM2-135M model. With it:
                         VOXMESH_LLM_API_KEY, VOXMESH_LLM_MODEL
  VOXMESH_GATEWAY_PORT (8080), VOXMESH_ORCHESTRATOR_PORT (50050),
  VOXMESH_STT_PORT (50051), VOXMESH_LLM_PORT (50052), VOXMESH_TTS_PORT (50053):
                         ports; each gRPC service's Prometheus endpoint is on
                         9100 + (port - 50050)
  VOXMESH_STT_MODEL      faster-whisper model name or path (default: bundled tiny.en)
  VOXMESH_TTS_ENGINES    TTS engines to load (default: hibari,kokoro-onnx)
  VOXMESH_TRACES         none | console | otlp | file:PATH
  VOXMESH_API_KEY        the gateway's API key (POST /v1/sessions buys session
                         tokens with it); unset generates one and prints it. On a
                         loopback --host the page is served a page key to do the same
                         (VOXMESH_GATEWAY_PAGE_KEY_ENABLED, see docs/protocol.md)
  VOXMESH_GATEWAY_TRUSTED_PROXIES
                         proxies whose X-Forwarded-For names the client (default
                         here 127.0.0.1,::1: a TLS proxy on this machine)

--host applies to the gateway only. Redis (started with the ACL users of
deploy/redis/users.acl, default user off, their passwords kept in
<state-dir>/redis-passwords) and the llama.cpp server always listen on 127.0.0.1;
the gRPC services too, unless --expose-services: they do not check who calls
them (the orchestrator believes the user the gateway names), so exposing them
lets anyone on the network past the gateway's keys and tokens.
"""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name}: expected a port number, got {value!r}") from None


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _redacted(url: str) -> str:
    """A URL without its password (``redis://:***@host:port/0``)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def exposure(stack: Stack, own_redis: bool, own_llm: bool) -> list[str]:
    """Lines saying which servers other machines can reach, and which only this one.

    Args:
        stack: The started stack.
        own_redis: Whether the launcher started Redis (else VOXMESH_REDIS_URL names one).
        own_llm: Whether the launcher started the llama.cpp server.
    """
    public = stack.host not in LOOPBACK_HOSTS
    services_public = stack.services_host not in LOOPBACK_HOSTS
    grpc = ", ".join(f"{name} :{getattr(stack.ports, name)}"
                     for name in ("orchestrator", "stt", "llm", "tts"))
    local = []
    if own_redis:
        local.append(f"redis :{stack.ports.redis} (password required)")
    if own_llm:
        local.append(f"llm server :{stack.ports.llm_server}")
    lines = []
    if public:
        lines.append(f"exposed on {stack.host}:{stack.ports.gateway}: gateway (API key or "
                     "session token required; /healthz and /metrics open)")
    else:
        local.insert(0, f"gateway :{stack.ports.gateway}")
    if services_public:
        lines.append(f"exposed on {stack.services_host}: gRPC services {grpc} and their "
                     "metrics, UNAUTHENTICATED: anyone who reaches them bypasses the gateway")
    else:
        local.append(f"gRPC services ({grpc}) and their metrics")
    if not lines:
        lines.append("exposed beyond this machine: nothing")
    lines.append("loopback only: " + ", ".join(local))
    return lines


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (e.g. from a process manager) stops the stack the way Ctrl-C does."""
    raise KeyboardInterrupt


def up(opts: argparse.Namespace) -> int:
    """Run the stack until interrupted."""
    ports = Ports(
        gateway=opts.port or _env_int("VOXMESH_GATEWAY_PORT", config.GATEWAY_PORT),
        orchestrator=_env_int("VOXMESH_ORCHESTRATOR_PORT", config.ORCHESTRATOR_PORT),
        stt=_env_int("VOXMESH_STT_PORT", config.STT_PORT),
        llm=_env_int("VOXMESH_LLM_PORT", config.LLM_PORT),
        tts=_env_int("VOXMESH_TTS_PORT", config.TTS_PORT),
        redis=opts.redis_port,
        llm_server=opts.llm_server_port,
    )
    stack = Stack(
        ports=ports,
        host=opts.host,
        services_host=opts.host if opts.expose_services else LOOPBACK,
        state_dir=Path(opts.state_dir).expanduser(),
        redis_url=os.environ.get("VOXMESH_REDIS_URL", ""),
        llm_base_url=os.environ.get("VOXMESH_LLM_BASE_URL", ""),
        extra_env={
            # The local page may buy its own session tokens; only on loopback (protocol.md).
            "VOXMESH_GATEWAY_PAGE_KEY_ENABLED": os.environ.get(
                "VOXMESH_GATEWAY_PAGE_KEY_ENABLED", str(opts.host in LOOPBACK_HOSTS).lower()),
            # A TLS proxy on this machine (caddy, nginx) may name the client it forwards.
            "VOXMESH_GATEWAY_TRUSTED_PROXIES": os.environ.get(
                "VOXMESH_GATEWAY_TRUSTED_PROXIES", "127.0.0.1,::1"),
            # A newcomer meets the reference dealership line: the router's front door.
            "VOXMESH_LLM_DEFAULT_AGENT": os.environ.get("VOXMESH_LLM_DEFAULT_AGENT", "router"),
        },
    )
    own_redis, own_llm = not stack.redis_url, not stack.llm_base_url
    generated_key = not os.environ.get("VOXMESH_API_KEY")
    print(f"voxmesh: starting the stack (logs in {stack.state_dir / 'logs'})...", flush=True)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        stack.start(timeout_s=opts.timeout)
    except LaunchError as exc:
        print(f"voxmesh: failed to start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"voxmesh: all services SERVING after {time.monotonic() - started:.1f} s")
    print(f"  redis         {_redacted(stack.redis_url)}")
    if own_redis:
        print(f"                services log in as their own ACL users; passwords in "
              f"{stack.state_dir / local_redis.PASSWORDS_FILE}")
    print(f"  llm endpoint  {stack.llm_base_url}")
    for name in ("orchestrator", "stt", "llm", "tts"):
        print(f"  {name:<13} {stack.addr(name)}  metrics :{stack.metrics_ports[name]}")
    if generated_key:
        print(f"  api key       {stack.api_key}  (generated; set VOXMESH_API_KEY to choose)")
    else:
        print("  api key       from VOXMESH_API_KEY")
    for line in exposure(stack, own_redis, own_llm):
        print(f"  {line}")
    print(f"\nOpen {stack.gateway_url} in a browser and speak. Ctrl-C stops everything.",
          flush=True)
    try:
        while True:
            for proc in stack.procs:
                code = proc.popen.poll()
                if code is not None:
                    print(f"voxmesh: {proc.name} exited with code {code}; see {proc.log_path}",
                          file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nvoxmesh: stopping...", flush=True)
        return 0
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``voxmesh`` console script."""
    parser = argparse.ArgumentParser(prog="voxmesh", description="VoxMesh voice assistant platform")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run the whole stack locally",
                               description=UP_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    up_parser.add_argument("--host", default=os.environ.get("VOXMESH_HOST", "127.0.0.1"),
                           help="interface the gateway binds (default 127.0.0.1, env "
                           "VOXMESH_HOST)")
    up_parser.add_argument("--expose-services", action="store_true",
                           help="bind the gRPC services on --host too (unauthenticated: "
                           "only on a network you trust)")
    up_parser.add_argument("--port", type=int, default=0,
                           help="gateway port (default 8080, env VOXMESH_GATEWAY_PORT)")
    up_parser.add_argument("--redis-port", type=int, default=6379,
                           help="port of the Redis started when VOXMESH_REDIS_URL is unset")
    up_parser.add_argument("--llm-server-port", type=int, default=8081,
                           help="port of the embedded LLM server (when no endpoint is set)")
    up_parser.add_argument("--state-dir", default="~/.cache/voxmesh",
                           help="where logs and Redis data go (default ~/.cache/voxmesh)")
    up_parser.add_argument("--timeout", type=float, default=300.0,
                           help="seconds to wait for every service to be SERVING")
    opts = parser.parse_args(argv)
    if opts.command == "up":
        return up(opts)
    return 2


if __name__ == "__main__":
    sys.exit(main())
