"""Credentials seen to work recently, for when SQL is away.

Jobs are accepted and followed while the database is down (Redis holds the live state;
the history catches up later, docs/architecture.md). Authentication must not undo that:
a credential verified in SQL within the last `grace_s` seconds keeps working while SQL
cannot be reached, until its own expiry. Nothing is granted that SQL had not just
granted; a credential SQL refused is forgotten at once. A revocation made through
another gateway replica shortly before an outage may therefore be honoured here only
when SQL is back (docs/security.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from myspinbot.accounts.models import User

MAX_ENTRIES = 10_000


class RecentlyVerified:
    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._entries: OrderedDict[str, tuple[User, float | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, key: str, user: User, expires_at: float | None) -> None:
        with self._lock:
            self._entries[key] = (user, expires_at, time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def recall(self, key: str) -> User | None:
        """The user of `key` if SQL vouched for it within the grace period."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        user, expires_at, seen = entry
        if time.monotonic() - seen > self.grace_s:
            return None
        if expires_at is not None and expires_at <= time.time():
            return None
        return user
