"""The voxmesh.v1.Dialogue servicer: a thin gRPC adapter over :class:`DialogueSession`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc

from services.llm import metrics
from services.llm.agents import AgentConfig, default_agents_dir
from services.llm.db.escalations import seed_staff
from services.llm.db.faq import read_faq, sync_faq
from services.llm.db.store import BookingStore, default_url
from services.llm.escalation import HumanDesk
from services.llm.memory import Memory
from services.llm.notify import Notifier
from services.llm.overrides import AgentCatalog, UserIdError, load_catalog
from services.llm.quotas import Clock, Quotas, utc_now
from services.llm.rag import load_knowledge_bases
from services.llm.rag.embedder import Embedder, load_embedder
from services.llm.rag.knowledge import knowledge_root
from services.llm.rag.retriever import KnowledgeRetriever
from services.llm.router import Router
from services.llm.semantic_router import SemanticRouter
from services.llm.session import DialogueSession, SessionError
from services.llm.tools import TOOLS, ToolBox, ToolContext
from services.llm.upstream import Upstream, UpstreamError
from voxmesh.config import LlmSettings
from voxmesh.logs import session_id_var
from voxmesh.ownership import OwnershipStore, OwnershipUnavailable, Principal, Verdict
from voxmesh.telemetry import context_from_grpc_metadata
from voxmesh.v1 import dialogue_pb2 as pb
from voxmesh.v1 import dialogue_pb2_grpc
from voxmesh.variables import VariableError, check_client_variables, merge_variables

log = logging.getLogger(__name__)

_End = None
"""Marks the end of a session's outgoing events."""

Outgoing = pb.ConverseResponse | SessionError | None


class DialogueService(dialogue_pb2_grpc.DialogueServicer):
    """Holds the agents and the upstream client; one :class:`DialogueSession` per stream."""

    def __init__(self, settings: LlmSettings, clock: Clock = utc_now) -> None:
        """Configure; :meth:`load` reads the agents and checks the upstream.

        ``clock`` is the time tools and escalation checks see (tests move it).
        """
        self.settings = settings
        self.clock = clock
        self.quotas = Quotas.from_settings(settings)
        self.agents: dict[str, AgentConfig] = {}
        self.catalog = AgentCatalog({}, {})
        self.upstream: Upstream | None = None
        self.store: BookingStore | None = None
        self.desk: HumanDesk | None = None
        self.toolboxes: dict[str, ToolBox] = {}
        self.memory: Memory | None = (
            Memory(settings.redis_url, settings.history_ttl_seconds) if settings.redis_url
            else None)
        self.notifier = Notifier(self.memory)
        self.owners = OwnershipStore(settings.redis_url)
        self.retriever: KnowledgeRetriever | None = None
        self.router: Router | None = None
        """Set at load when an agent has routes; sessions without one never route."""

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Add this servicer to ``server``; returns the full service name."""
        dialogue_pb2_grpc.add_DialogueServicer_to_server(self, server)
        return [pb.DESCRIPTOR.services_by_name["Dialogue"].full_name]

    async def load(self) -> None:
        """Load the agents and wait until the upstream answers ``GET /models``.

        Raises:
            RuntimeError: no endpoint configured, or it never answered.
            AgentError: an agent file is invalid (the message names file and field).
        """
        if not self.settings.base_url:
            raise RuntimeError(
                "VOXMESH_LLM_BASE_URL is not set: point it at an OpenAI-compatible endpoint "
                "(e.g. http://127.0.0.1:8081/v1), or start the stack with `voxmesh up`, "
                "which runs the embedded llama.cpp server"
            )
        directory = Path(self.settings.agents_dir) if self.settings.agents_dir else (
            default_agents_dir())
        catalog = await asyncio.to_thread(load_catalog, directory)
        agents = dict(catalog.agents)
        if self.settings.default_agent not in agents:
            raise RuntimeError(
                f"VOXMESH_LLM_DEFAULT_AGENT: agent {self.settings.default_agent!r} is not in "
                f"{directory} (known: {', '.join(sorted(agents))})"
            )
        if any(agent.tools for agent in agents.values()):
            await self._open_store(agents)
        bases = {agent.knowledge.base for agent in agents.values() if agent.knowledge}
        embedder: Embedder | None = None
        if bases:
            knowledge = await load_knowledge_bases(bases, self.settings)
            embedder = next(iter(knowledge.values())).embedder
            retriever = KnowledgeRetriever(knowledge)
            await retriever.warm_up()
            self.retriever = retriever
            log.info("knowledge bases ready", extra={"knowledge_bases": sorted(bases)})
        semantic = (await self._embed_routes(agents, embedder)
                    if any(agent.routes for agent in agents.values()) else None)
        upstream = Upstream(self.settings)
        models = await upstream.wait_until_ready()
        if models and self.settings.model not in models:
            log.warning("the endpoint does not list the configured model",
                        extra={"model": self.settings.model, "listed": models})
        if self.settings.warm_up:
            try:
                seconds = await upstream.warm_up(agents[self.settings.default_agent].prompt({}))
                log.info("warmed up", extra={"seconds": round(seconds, 3)})
            except UpstreamError as exc:  # the first turn will be slower, nothing worse
                log.warning("warm-up failed", extra={"error": exc.message})
        if semantic is not None:
            self.router = Router(upstream, self.settings.route_min_confidence, semantic,
                                 llm_tiebreak=self.settings.router_llm_tiebreak)
        self.agents, self.catalog, self.upstream = agents, catalog, upstream
        log.info("ready", extra={"agents": sorted(agents), "base_url": self.settings.base_url,
                                 "model": self.settings.model})

    async def _embed_routes(self, agents: dict[str, AgentConfig],
                            embedder: Embedder | None) -> SemanticRouter:
        """Embed the routes once, with the knowledge bases' model when one is loaded."""
        if embedder is None:
            embedder = await asyncio.to_thread(load_embedder, self.settings.embedding_model,
                                               self.settings.embedding_threads)
        semantic = SemanticRouter(embedder)
        sets = await asyncio.to_thread(semantic.prepare, agents.values())
        log.info("routes embedded", extra={"route_sets": sets,
                                           "llm_tiebreak": self.settings.router_llm_tiebreak})
        return semantic

    async def _open_store(self, agents: dict[str, AgentConfig]) -> None:
        """Create and seed the booking database; bind each agent's tools to it."""
        url = self.settings.database_url or default_url(self.settings.state_dir)
        store = BookingStore(url, bays=self.settings.bays)
        await asyncio.to_thread(store.create)
        await asyncio.to_thread(seed_staff, store.engine)
        await self._sync_faq(store, agents)
        self.store = store
        self.toolboxes = {name: ToolBox([TOOLS[t] for t in agent.tools], store)
                          for name, agent in agents.items() if agent.tools}
        self.desk = HumanDesk(store.engine, self.notifier, self.settings.escalation_check_seconds,
                              self.quotas.escalation_ticket_ttl_s, self.clock)
        resumed = await self.desk.resume()
        log.info("booking database ready", extra={"dialect": store.engine.dialect.name,
                                                  "resumed_escalations": resumed})

    async def _sync_faq(self, store: BookingStore, agents: dict[str, AgentConfig]) -> None:
        """The FAQ table mirrors the faq.yaml of the agents' knowledge bases."""
        root = knowledge_root(self.settings)
        pairs: list[tuple[str, str]] = []
        for base in sorted({a.knowledge.base for a in agents.values() if a.knowledge}):
            path = root / base / "faq.yaml"
            if path.is_file():
                pairs += await asyncio.to_thread(read_faq, path)
        if pairs:
            rows = await asyncio.to_thread(sync_faq, store.engine, pairs)
            log.info("faq table synced", extra={"questions": rows})

    def _tool_context(self, config: pb.DialogueConfig) -> ToolContext:
        """What the tools of ``config``'s conversation know: who calls, quotas, clock.

        Quotas are per session and per ``config.user_id``, the same user id that chose
        the per-user overrides (empty: anonymous, only the per-session caps apply).
        """
        return ToolContext(config.session_id,
                           self.desk.start if self.desk is not None else None,
                           user_id=config.user_id, quotas=self.quotas, clock=self.clock)

    async def aclose(self) -> None:
        """Stop background checks; close the upstream client and the database pool."""
        if self.desk is not None:
            await self.desk.aclose()
        if self.upstream is not None:
            await self.upstream.aclose()
        if self.store is not None:
            await asyncio.to_thread(self.store.dispose)
        if self.memory is not None:
            await self.memory.aclose()
        await self.owners.aclose()

    async def Converse(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[pb.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ConverseResponse]:
        """Run one conversation: config first, then turns, cancels and heard reports."""
        if self.upstream is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dialogue service is still loading")
        assert self.upstream is not None
        requests = aiter(request_iterator)  # one iterator: the reader goes on from here
        first = await anext(requests, None)
        if first is None or first.WhichOneof("request") != "config":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "config: the first ConverseRequest must carry config")
        assert first is not None
        config = first.config
        session_id_var.set(config.session_id)
        try:
            check_client_variables(config.variables)
            agents, user_variables = self.catalog.for_user(config.user_id)
        except (UserIdError, VariableError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"config.{exc}")
        await self._check_owner(config, context)
        name = config.agent or self.settings.default_agent
        agent = agents.get(name)
        if agent is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"unknown agent {name!r} (known: {', '.join(sorted(agents))})")
        assert agent is not None

        out: asyncio.Queue[Outgoing] = asyncio.Queue()
        session = DialogueSession(
            agent, merge_variables(user_variables, config.variables), self.upstream,
            self.settings.history_turns, out.put_nowait,
            context_from_grpc_metadata(context.invocation_metadata()),
            tools=self.toolboxes.get(agent.name), max_tool_steps=self.settings.max_tool_steps,
            max_tool_calls_per_turn=self.quotas.max_tool_calls_per_turn,
            memory=self.memory, session_id=config.session_id, agents=agents,
            toolboxes=self.toolboxes,
            router=self.router,
            notifier=self.notifier, retriever=self.retriever,
            tool_context=self._tool_context(config),
            switch_min_confidence=self.settings.switch_min_confidence,
            speculative_routing=self.settings.speculative_routing)
        restored = await session.load()
        log.info("conversation started", extra={"agent": agent.name, "restored_turns": restored})
        metrics.ACTIVE_SESSIONS.inc()
        reader = asyncio.create_task(self._read(requests, session, out))
        try:
            yield session.ready()
            while (item := await out.get()) is not _End:
                if isinstance(item, SessionError):
                    await context.abort(item.code, item.message)
                assert isinstance(item, pb.ConverseResponse)
                yield item
        finally:
            reader.cancel()
            await asyncio.wait([reader])
            await session.close()
            metrics.ACTIVE_SESSIONS.dec()
            log.info("conversation ended")

    async def _check_owner(self, config: pb.DialogueConfig,
                           context: grpc.aio.ServicerContext) -> None:
        """Open a session's conversation only for its owner (history, notifications and
        tickets are the owner's); the first caller of a new session id becomes it."""
        if not config.session_id:
            return
        principal = Principal(config.user_id, config.resume_token)
        try:
            verdict = await self.owners.claim(config.session_id, principal)
        except OwnershipUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}: try again")
        if verdict in (Verdict.CREATED, Verdict.OWNER):
            return
        metrics.ACCESS_REFUSED.inc()
        self.owners.report("session_forbidden", component="llm",
                           target_session=config.session_id, user_id=config.user_id,
                           presented_resume_token=bool(config.resume_token))
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            "config.session_id: the session belongs to another caller")

    @staticmethod
    async def _read(requests: AsyncIterator[pb.ConverseRequest], session: DialogueSession,
                    out: asyncio.Queue[Outgoing]) -> None:
        """Feed requests to the session in order; at half-close, let the last reply finish."""
        try:
            async for request in requests:
                await session.handle(request)
            await session.finish()
            out.put_nowait(_End)
        except SessionError as exc:
            out.put_nowait(exc)
        except Exception as exc:  # the request stream broke, or a bug: end this stream only
            log.warning("reading requests failed", exc_info=True)
            out.put_nowait(SessionError(grpc.StatusCode.INTERNAL, f"internal error: {exc}"))
