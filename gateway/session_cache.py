"""The open session of each conversation (channel, address), cached write-through.

This process owns the database (DESIGN section 8 adds a shared store later, and then this cache
goes): every step updates the cache after its commit, so a reply needs no read. Bounded: past
`limit` conversations it starts again empty, and a miss costs one read.
"""

from __future__ import annotations

from gateway.session import Session

SESSION_CACHE = 200_000

Key = tuple[str, str]  # (channel, address)


class SessionCache:
    """Open sessions by conversation, and by response id the conversations whose open session
    has it (a channel whose replies name the response, as email tokens do, saves a read)."""

    def __init__(self, limit: int = SESSION_CACHE) -> None:
        self.limit = limit
        self._sessions: dict[Key, Session | None] = {}  # None: known to have none open
        self._open_ids: dict[str, Key] = {}  # response id -> its key in _sessions

    def __contains__(self, key: Key) -> bool:
        return key in self._sessions

    def get(self, key: Key) -> Session | None:
        """The cached open session (None when there is none, or the key is not cached)."""
        return self._sessions.get(key)

    def remember(self, key: Key, session: Session | None) -> None:
        """What is stored now for this conversation: its open session, or None."""
        if len(self._sessions) >= self.limit and key not in self._sessions:
            self._sessions.clear()
            self._open_ids.clear()
        self._drop_id(key)
        self._sessions[key] = session
        if session is not None:
            self._open_ids[session.response_id] = key

    def forget(self, key: Key) -> None:
        """Not known any more: the next step reads the database."""
        self._drop_id(key)
        self._sessions.pop(key, None)

    def forget_response(self, response_id: str) -> None:
        """A response deleted (erased)."""
        self._open_ids.pop(response_id, None)

    def open_response(self, response_id: str) -> Session | None:
        """The open session with this response id if cached; None when the response is closed,
        replaced or not cached."""
        key = self._open_ids.get(response_id)
        if key is None:
            return None
        session = self._sessions.get(key)
        return session if session is not None and session.response_id == response_id else None

    def sizes(self) -> dict[str, int]:
        """Entries held: conversations, and response ids of open sessions."""
        return {"sessions": len(self._sessions), "open_response_ids": len(self._open_ids)}

    def _drop_id(self, key: Key) -> None:
        # A conversation's session closed or replaced takes its response id out of the index.
        # Kept, every response a conversation ever had would stay until `limit` conversations
        # filled the cache: a company with fewer customers than that, each answering survey
        # after survey, never gets there, and the index grew without bound.
        before = self._sessions.get(key)
        if before is not None and self._open_ids.get(before.response_id) == key:
            del self._open_ids[before.response_id]
