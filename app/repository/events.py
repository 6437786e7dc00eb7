"""The outbox's SQL: what a delivery worker claims, what it records, and what operators list and replay.

Events are written by the statements that make the changes they report
(``files.py``, ``maintenance.py``); this module only moves them along. An
``EventRepository`` works on a connection of its own (never the request
pool), each method one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2.extensions import connection as Connection

# Claim a batch of due events for this worker (``worker``, its token) until ``lease`` seconds from now:
# pending, due, not held by a live worker, and not behind an earlier pending
# event of the same file (events of one file go out in order; a dead one no
# longer holds the others back). SKIP LOCKED hands racing workers disjoint
# batches, and the lease, committed before any POST, keeps an event from
# being sent by two workers at once; a worker that dies lets it go at the
# lease's end. A later event of a file waits while an earlier one is held,
# since that one is still pending.
CLAIM_DUE = """
    UPDATE events AS e
    SET locked_until = now() + make_interval(secs => %(lease)s), locked_by = %(worker)s
    FROM (
        SELECT c.seq
        FROM events AS c
        WHERE c.state = 'pending'
          AND c.next_attempt_at <= now()
          AND (c.locked_until IS NULL OR c.locked_until < now())
          AND NOT EXISTS (
              SELECT 1 FROM events AS b
              WHERE b.object_key = c.object_key AND b.seq < c.seq AND b.state = 'pending'
          )
        ORDER BY c.seq
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE e.seq = due.seq
    RETURNING e.seq, e.id, e.type, e.occurred_at, e.user_id, e.provider, e.object_key, e.data,
              e.attempts, e.delivered_to
"""

# Hold one claimed event for another ``lease`` seconds, right before sending it; nothing
# comes back when this worker's hold ran out and another took it (it must not send it).
HOLD = """
    UPDATE events SET locked_until = now() + make_interval(secs => %(lease)s)
    WHERE seq = %(seq)s AND locked_by = %(worker)s AND state = 'pending'
    RETURNING seq
"""

# Let go of what this worker claimed and has not sent (it is stopping).
RELEASE = """
    UPDATE events SET locked_until = NULL, locked_by = NULL
    WHERE locked_by = %(worker)s AND state = 'pending'
"""

# One attempt's outcome, recorded only by the worker that holds the event. ``done``: every
# receiver has it now; else it is tried again in ``retry_in`` seconds, or is dead after
# ``max_attempts``.
FINISH_ATTEMPT = """
    UPDATE events
    SET attempts = attempts + 1,
        delivered_to = %(delivered_to)s,
        locked_until = NULL,
        locked_by = NULL,
        last_error = %(error)s,
        state = CASE WHEN %(done)s THEN 'delivered'
                     WHEN attempts + 1 >= %(max_attempts)s THEN 'dead'
                     ELSE 'pending' END,
        delivered_at = CASE WHEN %(done)s THEN now() END,
        next_attempt_at = now() + make_interval(secs => %(retry_in)s)
    WHERE seq = %(seq)s AND locked_by = %(worker)s
    RETURNING state
"""

# Delivered events past the retention period go, a batch at a time.
PRUNE_DELIVERED = """
    DELETE FROM events
    WHERE seq IN (
        SELECT seq FROM events
        WHERE state = 'delivered' AND delivered_at < now() - make_interval(secs => %(keep)s)
        LIMIT %(limit)s
    )
"""

# What the workers report as gauges (both counts use a partial index: migration 011 adds dead's).
OUTBOX_STATS = """
    SELECT (SELECT count(*) FROM events WHERE state = 'pending'),
           (SELECT count(*) FROM events WHERE state = 'dead'),
           (SELECT coalesce(extract(epoch FROM greatest(interval '0', now() - min(next_attempt_at))), 0)
            FROM events WHERE state = 'pending')
"""

SELECT_EVENTS = """
    SELECT seq, id, type, occurred_at, user_id, provider, object_key, state, attempts,
           next_attempt_at, delivered_to, last_error
    FROM events
    WHERE state = ANY(%(states)s)
    ORDER BY seq
    LIMIT %(limit)s
"""

# Send again: from the start for a delivered event (to every receiver), else to
# the receivers that have not had it. A pending event a worker holds stays held
# (that worker may be sending it: no other may meanwhile).
REPLAY = """
    UPDATE events
    SET state = 'pending', attempts = 0, next_attempt_at = now(),
        locked_until = CASE WHEN state = 'pending' AND locked_until > now() THEN locked_until END,
        locked_by = CASE WHEN state = 'pending' AND locked_until > now() THEN locked_by END,
        delivered_to = CASE WHEN state = 'delivered' THEN '{}'::text[] ELSE delivered_to END,
        delivered_at = NULL
    WHERE (id::text = ANY(%(ids)s) OR (%(all_dead)s AND state = 'dead'))
    RETURNING id
"""


@dataclass(frozen=True)
class OutboxEvent:
    """An event as a worker claimed it."""

    seq: int
    id: str
    type: str
    occurred_at: datetime
    user_id: str
    provider: str
    object_key: str
    data: dict[str, Any]
    attempts: int
    delivered_to: tuple[str, ...]


@dataclass(frozen=True)
class OutboxStats:
    """The outbox at a glance, for the worker's gauges."""

    pending: int
    dead: int
    oldest_due_seconds: float


@dataclass(frozen=True)
class ListedEvent:
    """An event as ``flask events list`` shows it."""

    seq: int
    id: str
    type: str
    occurred_at: datetime
    user_id: str
    provider: str
    object_key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    delivered_to: tuple[str, ...]
    last_error: str | None


class EventRepository:
    """The outbox, on a connection of the caller's; each method is one transaction."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def _all(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._conn, self._conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def claim_due(self, worker: str, limit: int, lease_seconds: float) -> list[OutboxEvent]:
        """Take up to ``limit`` due events for ``worker`` for ``lease_seconds``, oldest first."""
        rows = self._all(CLAIM_DUE, {"worker": worker, "limit": limit, "lease": lease_seconds})
        events = [
            OutboxEvent(r[0], str(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9])) for r in rows
        ]
        return sorted(events, key=lambda event: event.seq)

    def hold(self, worker: str, seq: int, lease_seconds: float) -> bool:
        """Hold a claimed event ``lease_seconds`` more; False when ``worker`` no longer has it."""
        return bool(self._all(HOLD, {"worker": worker, "seq": seq, "lease": lease_seconds}))

    def release(self, worker: str) -> None:
        """Let go of every event ``worker`` holds and has not sent."""
        self._all(RELEASE, {"worker": worker})

    def finish_attempt(
        self,
        worker: str,
        seq: int,
        *,
        delivered_to: Sequence[str],
        done: bool,
        error: str | None,
        retry_in: float,
        max_attempts: int,
    ) -> str:
        """Record one attempt; return the event's state after it (pending, delivered, dead; lost)."""
        params = {
            "worker": worker,
            "seq": seq,
            "delivered_to": list(delivered_to),
            "done": done,
            "error": error,
            "retry_in": retry_in,
            "max_attempts": max_attempts,
        }
        rows = self._all(FINISH_ATTEMPT, params)
        return str(rows[0][0]) if rows else "lost"

    def prune_delivered(self, keep_seconds: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` events delivered over ``keep_seconds`` ago; return how many went."""
        with self._conn, self._conn.cursor() as cur:
            cur.execute(PRUNE_DELIVERED, {"keep": keep_seconds, "limit": limit})
            return int(cur.rowcount)

    def stats(self) -> OutboxStats:
        """How many events are pending and dead, and how long the oldest pending one has been due."""
        rows = self._all(OUTBOX_STATS, {})
        pending, dead, oldest = rows[0]
        return OutboxStats(int(pending), int(dead), float(oldest))

    def list_events(self, states: Sequence[str], limit: int) -> list[ListedEvent]:
        """The first ``limit`` events in these states, oldest first."""
        rows = self._all(SELECT_EVENTS, {"states": list(states), "limit": limit})
        return [
            ListedEvent(
                seq=r[0],
                id=str(r[1]),
                type=r[2],
                occurred_at=r[3],
                user_id=r[4],
                provider=r[5],
                object_key=r[6],
                state=r[7],
                attempts=r[8],
                next_attempt_at=r[9],
                delivered_to=tuple(r[10]),
                last_error=r[11],
            )
            for r in rows
        ]

    def replay(self, ids: Sequence[str], *, all_dead: bool = False) -> list[str]:
        """Queue these events (and with ``all_dead`` every dead one) to be sent again; return their ids."""
        return [str(r[0]) for r in self._all(REPLAY, {"ids": list(ids), "all_dead": all_dead})]
