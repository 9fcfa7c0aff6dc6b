"""Tenant credentials of the ClickHouse HTTP front: user = tenant id, password = one of its API keys.

A key is checked the way the API checks it (`entities.keys.KeyRepository.authenticate`: hashed secret,
constant-time compare, revoked keys refused); its tenant must be the user name and its role `read` or
`admin` (an `ingest` key sends events, it does not read them). Answers are cached for `ttl` seconds
(default 5) by a hash of the (user, key) pair, so a dashboard refreshing every second does not hit the
entity store each time and a revoked key stops working within `ttl` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable

READ_ROLES = frozenset({"read", "admin"})
log = logging.getLogger("meterstream.http_front")


class TenantKeys:
    def __init__(self, authenticate: Callable[[str], object | None], ttl: float = 5.0, max_entries: int = 10_000
    ) -> None:  # fmt: skip
        self._authenticate = authenticate
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[bytes, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def check(self, user: str, password: str) -> bool:
        """True when `password` is an active read/admin key of tenant `user`."""
        if not user or not password:
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[1] > now:
                return hit[0]
        principal = self._authenticate(password)
        ok = principal is not None and getattr(principal, "tenant", None) == user and \
            getattr(principal, "role", None) in READ_ROLES  # fmt: skip
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
            self._cache[digest] = (ok, now + self.ttl)
        return ok


def keys_from_settings(settings) -> TenantKeys | None:  # type: ignore[no-untyped-def]
    """The entity store's keys (SQLite by default, PostgreSQL by URL); None when it cannot be opened."""
    try:
        from meterstream.entities.db import make_engine, session_factory
        from meterstream.entities.keys import KeyRepository

        repo = KeyRepository(session_factory(make_engine(settings)))
    except Exception as exc:  # no entity store here: no tenant can sign in (the internal user still works)
        log.warning("ClickHouse HTTP front: tenants cannot sign in, the entity store does not open: %s", exc)
        return None

    def authenticate(token: str):  # type: ignore[no-untyped-def]
        try:
            return repo.authenticate(token)
        except Exception:  # a store that is not migrated yet, or unreachable: not a valid key
            return None

    return TenantKeys(authenticate)
