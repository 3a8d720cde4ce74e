"""Compare-and-append: a session's sealed entries go into its stream only if the stream still
ends where the writer sealed them from.

Appending and advancing the chain head is one atomic step in Redis: a Lua script (run with
EVALSHA, and with EVAL when the server does not have it cached: NOSCRIPT) reads the stream's
last entry (XREVRANGE + - COUNT 1) and, only if its ``seq`` and ``hash`` are the ones the
writer sealed on, appends the entries with plain ``XADD key * ...`` (never MAXLEN or MINID).
Otherwise it writes nothing and answers the stream's actual last ``seq`` and ``hash``, and
the writer seals again on top of them. Redis runs one script at a time, so any number of
writers, in any order, serialise into one chain and never fork it.

The script runs with the caller's ACL (Redis checks every command it calls, and its key):
the writer's user needs EVALSHA and EVAL besides XADD and XREVRANGE, nothing more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from services.orchestrator.audit_chain import CHAINED_FIELDS, HASH_FIELD, ChainHead

ENTRY_ORDER = (*CHAINED_FIELDS, HASH_FIELD)
"""The order the script writes an entry's fields in."""

APPEND_SCRIPT = """#!lua
-- Compare-and-append of one session's audit entries (services/orchestrator/audit_append.py).
-- KEYS[1]: the stream. ARGV[1], ARGV[2]: the seq and hash the caller expects its last entry
-- to hold ("0" and "" for a stream without entries). ARGV[3]: n, fields per entry;
-- ARGV[4 .. 3+n]: their names; then n values per entry, entry after entry.
-- The stream ends as expected: XADD every entry, return {1, entries added}.
-- Otherwise: write nothing, return {0, seq, hash} of its last entry as stored.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq, hash = '0', ''
if #last > 0 then
  seq, hash = '', ''
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'seq' then seq = fields[i + 1]
    elseif fields[i] == 'hash' then hash = fields[i + 1] end
  end
end
if seq ~= ARGV[1] or hash ~= ARGV[2] then
  return {0, seq, hash}
end
local n = tonumber(ARGV[3])
local added = 0
for first = 4 + n, #ARGV, n do
  local args = {KEYS[1], '*'}
  for j = 0, n - 1 do
    args[#args + 1] = ARGV[4 + j]
    args[#args + 1] = ARGV[first + j]
  end
  redis.call('XADD', unpack(args))
  added = added + 1
end
return {1, added}
"""
APPEND_SHA = hashlib.sha1(APPEND_SCRIPT.encode()).hexdigest()
"""The id Redis caches the script under (EVALSHA)."""


@dataclass(frozen=True, slots=True)
class Tip:
    """What a stream's last entry says, exactly as stored: its ``seq`` and ``hash`` fields."""

    seq: str
    hash: str

    @classmethod
    def of(cls, head: ChainHead) -> Tip:
        """The tip of a stream whose chain ends at ``head`` (no entries: ``seq`` 0)."""
        return EMPTY if head.seq == 0 else cls(str(head.seq), head.hash)

    def chain_head(self, session_id: str) -> ChainHead | None:
        """The chain head to seal on after this tip; None when the last entry is not chained."""
        if self == EMPTY:
            return ChainHead.start(session_id)
        if self.seq.isdecimal() and int(self.seq) > 0 and self.hash:
            return ChainHead(int(self.seq), self.hash)
        return None


EMPTY = Tip("0", "")
"""The tip of a stream without entries."""


@dataclass(frozen=True, slots=True)
class Appended:
    """Every entry went in."""

    count: int


@dataclass(frozen=True, slots=True)
class Moved:
    """The stream did not end where expected; nothing was written. ``tip`` is where it ends."""

    tip: Tip


AppendReply = Appended | Moved | ResponseError
"""One session's outcome; a ResponseError is Redis refusing the call (NOPERM, WRONGTYPE,
OOM, ...): see :func:`services.orchestrator.audit.rejects_session`."""


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """Append ``entries`` (complete fields) to ``key`` if its last entry is ``expected``."""

    key: str
    expected: Tip
    entries: Sequence[dict[str, str]]

    def args(self) -> list[str]:
        """The script's ARGV."""
        args = [self.expected.seq, self.expected.hash, str(len(ENTRY_ORDER)), *ENTRY_ORDER]
        for entry in self.entries:
            args.extend(entry[name] for name in ENTRY_ORDER)
        return args


async def compare_and_append(client: aioredis.Redis,
                             requests: Sequence[AppendRequest]) -> list[AppendReply]:
    """Run the script for each request in one round trip (two when Redis lacks the script).

    Each request is its own script call, so one session's refusal never holds back another.

    Raises:
        RedisError: the connection failed; whether any request was applied is unknown.
    """
    replies = await _run(client, requests, cached=True)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:  # Redis restarted or flushed its script cache: EVAL caches it again
        again = await _run(client, [requests[i] for i in missing], cached=False)
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return [_reply(reply) for reply in replies]


async def _run(client: aioredis.Redis, requests: Sequence[AppendRequest],
               cached: bool) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for request in requests:
            if cached:
                pipe.evalsha(APPEND_SHA, 1, request.key, *request.args())
            else:
                pipe.eval(APPEND_SCRIPT, 1, request.key, *request.args())
        return list(await pipe.execute(raise_on_error=False))


def _reply(reply: Any) -> AppendReply:
    if isinstance(reply, ResponseError):
        return reply
    status, *rest = reply
    if int(status) == 1:
        return Appended(int(rest[0]))
    return Moved(Tip(*(_text(v) for v in rest)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
