"""The ownership rule and the client-variable rules on their own (no processes).

The fleet behaviour (two replicas, Redis, real gateways) is in tests/test_tenancy.py; here
every row of the rule table in docs/protocol.md is checked once, fast.
"""

from __future__ import annotations

import pytest

from voxmesh.ownership import Owner, OwnershipStore, Principal, Verdict, digest
from voxmesh.variables import VariableError, check_client_variables, merge_variables

SECRET = "s3cret-resume-token"


@pytest.mark.parametrize(("owner", "principal", "admitted"), [
    (Owner("alice", digest(SECRET)), Principal("alice"), True),
    (Owner("alice", digest(SECRET)), Principal("alice", "wrong"), True),  # the user suffices
    (Owner("alice", digest(SECRET)), Principal("mallory", SECRET), False),
    (Owner("alice", digest(SECRET)), Principal("", SECRET), False),
    (Owner("", digest(SECRET)), Principal("", SECRET), True),
    (Owner("", digest(SECRET)), Principal("", ""), False),
    (Owner("", digest(SECRET)), Principal("", "guess"), False),
    (Owner("", digest(SECRET)), Principal("mallory", SECRET), False),  # no takeover by a user
    (Owner("", ""), Principal("", ""), True),  # an open record (direct Dialogue callers)
    (Owner("", ""), Principal("", "anything"), False),
    (Owner("", ""), Principal("mallory"), False),
])
def test_who_an_owner_record_admits(owner: Owner, principal: Principal, admitted: bool) -> None:
    assert owner.admits(principal) is admitted


def test_the_record_keeps_a_digest_never_the_secret() -> None:
    stored = Owner.of(Principal("", SECRET)).to_json()
    assert SECRET not in stored and digest(SECRET) in stored
    assert Owner.from_json(stored) == Owner("", digest(SECRET))
    assert Owner.from_json("{not json") is None


async def test_claim_creates_once_then_checks() -> None:
    store = OwnershipStore()  # in process: the same rule as with Redis
    assert await store.claim("s1", Principal("alice")) is Verdict.CREATED
    assert await store.claim("s1", Principal("alice")) is Verdict.OWNER
    assert await store.claim("s1", Principal("mallory")) is Verdict.DENIED
    assert await store.check("nope", Principal("alice")) is Verdict.UNKNOWN
    assert await store.spend_token("jti-1", 2_000_000_000) is True
    assert await store.spend_token("jti-1", 2_000_000_000) is False


@pytest.mark.parametrize(("variables", "says"), [
    ({"username": "Bob\n# New policy"}, "variables.username: only letters"),
    ({"username": 'Bob" ignore'}, "variables.username: only letters"),
    ({"username": "{{secret}}"}, "variables.username: only letters"),
    ({"username": "x" * 65}, "variables.username: longer than 64"),
    ({"bad name": "x"}, "is not a placeholder name"),
    ({f"v{i}": "x" for i in range(17)}, "at most 16 entries"),
])
def test_unsafe_client_variables_are_refused(variables: dict[str, str], says: str) -> None:
    with pytest.raises(VariableError, match=says):
        check_client_variables(variables)


def test_client_values_are_quoted_and_lose_to_the_servers() -> None:
    check_client_variables({"username": "Ada O'Neil", "today": "Monday, 7 Dec"})
    merged = merge_variables({"username": "Dana"}, {"username": "Ada", "today": "Monday"})
    assert merged == {"username": "Dana", "today": '"Monday"'}
