"""The gateway behind a proxy: who the client is, and who gets the page key.

Real ``python -m gateway`` processes in front of the scripted orchestrator. This test
process plays both the proxy (connecting from 127.0.0.1, configured as trusted, with an
``X-Forwarded-For`` per caller) and the attacker (connecting from 127.0.0.2, which Linux
routes to loopback too but which no gateway here trusts, with forged headers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect

from tests.scripted_orchestrator import ScriptedOrchestrator, serve_scripted
from tests.test_gateway import realtime_url, start_gateway, start_session
from tests.test_gateway_security import closed_with
from voxmesh.config import GatewaySettings
from voxmesh.launcher import Stack

StackFactory = Callable[..., Stack]

PROXY = "127.0.0.1"
STRANGER = "127.0.0.2"
CAP = 2
APP = "https://app.example.com"


@pytest.fixture(scope="module")
async def scripted() -> AsyncIterator[tuple[str, ScriptedOrchestrator]]:
    async with serve_scripted() as served:
        yield served


@pytest.fixture(scope="module")
def behind_proxy(stack_factory: StackFactory,
                 scripted: tuple[str, ScriptedOrchestrator]) -> Stack:
    """Trusts 127.0.0.1 only, at most ``CAP`` connections per client IP, page key on."""
    return start_gateway(stack_factory, scripted[0], trusted_proxies=PROXY,
                         max_connections_per_ip=str(CAP), page_key_enabled="true",
                         allowed_origins=f"self,localhost,{APP}")


async def open_as(stack: Stack, forwarded: str | None,
                  source: str = PROXY) -> ClientConnection:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return await connect(await realtime_url(stack), additional_headers=headers,
                         local_addr=(source, 0))


async def assert_refused(stack: Stack, forwarded: str | None, source: str = PROXY) -> None:
    ws = await open_as(stack, forwarded, source)
    async with ws:
        code, reason = await closed_with(ws)
    assert (code, reason) == (4429, f"this IP already has {CAP} connections"), forwarded


async def test_callers_behind_a_trusted_proxy_are_capped_by_their_own_address(
        behind_proxy: Stack) -> None:
    held: list[ClientConnection] = []
    try:
        for i in range(25):  # 25 callers from one proxy address, the per-IP cap is 2
            held.append(await open_as(behind_proxy, f"203.0.113.{i + 1}"))
            await start_session(held[-1])
        held.append(await open_as(behind_proxy, "203.0.113.1"))  # its second: allowed
        await start_session(held[-1])
        await assert_refused(behind_proxy, "203.0.113.1")  # its third
        # A client cannot slip past by prepending addresses: the proxy appends the one it
        # saw, and the right-most address the gateway does not trust is the client.
        await assert_refused(behind_proxy, "198.51.100.7, 203.0.113.1")
        await assert_refused(behind_proxy, f"203.0.113.1, {PROXY}")  # via two proxies
    finally:
        for ws in held:
            await ws.close()


@pytest.mark.parametrize("trusted", ["127.0.0.1", ""], ids=["untrusted-peer", "trusts-none"])
async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
        stack_factory: StackFactory, scripted: tuple[str, ScriptedOrchestrator],
        trusted: str) -> None:
    # Trusting 127.0.0.1, a peer at 127.0.0.2 is not a proxy; trusting none (the default),
    # not even 127.0.0.1 is.
    stack = start_gateway(stack_factory, scripted[0], trusted_proxies=trusted,
                          max_connections_per_ip=str(CAP))
    source = STRANGER if trusted else PROXY
    held = [await open_as(stack, f"198.51.100.{i}", source) for i in range(CAP)]
    try:
        for ws in held:
            await start_session(ws)
        await assert_refused(stack, "198.51.100.99", source)  # still counted as the peer
    finally:
        for ws in held:
            await ws.close()


def test_no_proxy_is_trusted_by_default_and_everyone_never(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXMESH_API_KEY", "k" * 16)
    monkeypatch.delenv("VOXMESH_GATEWAY_TRUSTED_PROXIES", raising=False)
    assert GatewaySettings().trusted_proxies == []
    monkeypatch.setenv("VOXMESH_GATEWAY_TRUSTED_PROXIES", "10.244.0.0/16, 10.0.0.1")
    assert GatewaySettings().trusted_proxies == ["10.244.0.0/16", "10.0.0.1"]
    for bad in ("*", "ingress.local", "10.0.0.0/33"):
        monkeypatch.setenv("VOXMESH_GATEWAY_TRUSTED_PROXIES", bad)
        with pytest.raises(ValidationError, match="TRUSTED_PROXIES: .* is not an IP address"):
            GatewaySettings()


# -- the page key -----------------------------------------------------------------------------


def page_key(html: str) -> str:
    return html.split('data-session-key="')[1].split('"')[0]


async def test_page_key_goes_only_to_pages_loaded_on_this_machine(behind_proxy: Stack) -> None:
    port = behind_proxy.ports.gateway
    local = {"Host": f"localhost:{port}"}
    async with httpx.AsyncClient(base_url=behind_proxy.gateway_url) as http:
        key = page_key((await http.get("/", headers=local)).text)
        assert len(key) == 64  # a loopback page load from a loopback peer
        assert page_key((await http.get("/")).text) == key  # Host: 127.0.0.1:port
        same = {**local, "Sec-Fetch-Site": "same-origin"}
        assert page_key((await http.get("/", headers=same)).text) == key

        # A remote client behind the proxy that says Host: localhost.
        remote = {**local, "X-Forwarded-For": "203.0.113.7"}
        assert page_key((await http.get("/", headers=remote)).text) == ""
        refused = await http.post("/v1/sessions",
                                  headers={**remote, "Authorization": f"Bearer {key}"})
        assert refused.status_code == 401
        # A cross-site request, or one from an origin that is not allowed.
        cross = {**local, "Sec-Fetch-Site": "cross-site"}
        assert page_key((await http.get("/", headers=cross)).text) == ""
        evil = {**local, "Origin": "https://evil.example"}
        assert page_key((await http.get("/", headers=evil)).text) == ""
        bought = await http.post("/v1/sessions",
                                 headers={**local, "Authorization": f"Bearer {key}"})
        assert bought.status_code == 200
        # A remote page load whose Host is an origin listed exactly: the operator's choice.
        app = {"Host": "app.example.com", "X-Forwarded-For": "203.0.113.7",
               "X-Forwarded-Proto": "https"}
        assert page_key((await http.get("/", headers=app)).text) == key
        assert page_key((await http.get("/", headers={**app, "Host": "evil.example"})).text) \
            == ""

    # Forged headers from a peer that is not a trusted proxy change nothing: it is on this
    # machine (127.0.0.2 is loopback), so it gets the key, and 203.0.113.7 is not believed.
    stranger = httpx.AsyncHTTPTransport(local_address=STRANGER)
    async with httpx.AsyncClient(base_url=behind_proxy.gateway_url, transport=stranger) as http:
        assert page_key((await http.get("/", headers=remote)).text) == key
