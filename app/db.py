"""The process-wide PostgreSQL pool, and the one way the service runs SQL.

Connections are opened on first use, in the process that uses them, so
nothing holds a connection across the server's fork. Every unit of work
(``Database.run``, one per repository call) borrows a connection, runs, and
gives it back before it returns: no caller can hold one while it waits on
storage, by construction. In autocommit, each ``execute`` of a unit is one
round trip and its own transaction.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from .config import Settings
from .errors import ServiceUnavailable
from .metrics import (
    DB_CONNECTIONS_OPENED,
    DB_POOL_IN_USE,
    DB_POOL_TIMEOUTS,
    DB_POOL_WAIT_SECONDS,
    DB_POOL_WAITS,
    DB_RETRIES,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_SECONDS = "2"
READINESS_TIMEOUT_MS = 1000
Connection = psycopg2.extensions.connection


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot serve this request right now; the client may retry."""

    def __init__(self, message: str = "database unavailable, try again shortly"):
        super().__init__(message, headers={"Retry-After": RETRY_AFTER_SECONDS})


class Database:
    """A bounded pool of connections to one PostgreSQL database.

    At most ``size`` connections exist per process; idle ones are reused
    newest first, so a quiet period lets the oldest go stale rather than all.
    psycopg2's own pools close every returned connection above ``minconn``
    and open ``minconn`` eagerly, which is why this one is ours.

    A server that restarts or crashes closes every connection at once, so an
    idle connection is checked before it is lent (``_looks_alive``: a poll of
    its socket, no round trip), and once one connection turns out broken the
    idle ones are dropped: the next borrow opens a fresh connection instead of
    finding the same death one request at a time.
    """

    def __init__(
        self,
        dsn: str,
        *,
        size: int,
        pool_timeout: float,
        connect_timeout: int,
        statement_timeout_ms: int,
    ):
        self._dsn = dsn
        self._size = size
        self._pool_timeout = pool_timeout
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._slots = threading.BoundedSemaphore(size)
        self._pid = os.getpid()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Build a pool sized and timed as ``settings`` say."""
        return cls(
            settings.database_url,
            size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_seconds,
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    # Connections inherited across fork share sockets with the
                    # parent: forget them (closing would close the parent's).
                    self._idle = []
                    self._slots = threading.BoundedSemaphore(self._size)
                    self._pid = os.getpid()

    def _open(self, application_name: str) -> Connection:
        return psycopg2.connect(
            self._dsn,
            connect_timeout=self._connect_timeout,
            application_name=application_name,
            # Notice a dead peer (a Neon compute suspended, a failover) in
            # seconds rather than the kernel's two hours.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )

    def connect_apart(self, purpose: str, statement_timeout_ms: int = 60_000) -> Connection:
        """Open a connection outside the pool (the background sweep's); the caller closes it.

        Its statements and lock waits are bounded, so one that hangs fails the
        round instead of stopping that work for good.
        """
        conn = self._open(f"upload-service-{purpose}")
        conn.cursor_factory = bounded_cursor(statement_timeout_ms, lock_timeout_ms=statement_timeout_ms)
        return conn

    def _connect(self) -> Connection:
        conn = self._open("upload-service")
        # Autocommit: each execute() is one round trip and its own transaction,
        # with no BEGIN and COMMIT messages around it. Statements that must
        # commit together are sent as one execute() (one implicit transaction).
        conn.autocommit = True
        conn.cursor_factory = bounded_cursor(self._statement_timeout_ms)
        return conn

    def borrow(self) -> Connection:
        """Take a connection, waiting at most the pool timeout for a free one."""
        self._check_fork()
        slots = self._slots
        if not slots.acquire(blocking=False):
            DB_POOL_WAITS.inc()
            started = time.perf_counter()
            if not slots.acquire(timeout=self._pool_timeout):
                DB_POOL_TIMEOUTS.inc()
                raise DatabaseUnavailable("database busy: no free connection, try again shortly")
            DB_POOL_WAIT_SECONDS.observe(time.perf_counter() - started)
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _looks_alive(conn):
                DB_POOL_IN_USE.inc()
                return conn
            # The server closed it while it sat idle (a restart, a pooler's idle timeout).
            with contextlib.suppress(psycopg2.Error):
                conn.close()
        try:
            conn = self._connect()
        except psycopg2.Error as exc:
            slots.release()
            DB_CONNECTIONS_OPENED.labels("failed").inc()
            log.warning("database connection failed: %s", type(exc).__name__)
            raise DatabaseUnavailable() from None
        except BaseException:
            slots.release()
            raise
        DB_CONNECTIONS_OPENED.labels("ok").inc()
        DB_POOL_IN_USE.inc()
        return conn

    def give_back(self, conn: Connection, *, discard: bool = False) -> None:
        """Return a borrowed connection, rolled back; a broken one is closed instead."""
        if self._pid != os.getpid():
            return
        broken = discard or conn.closed != 0
        if not broken and conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            try:
                conn.rollback()
            except psycopg2.Error:
                broken = True
        if broken:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
            # Whatever broke this one (a restart, a failover) most likely broke
            # the idle ones too: drop them rather than lend them one by one.
            self.close()
        else:
            with self._lock:
                self._idle.append(conn)
        DB_POOL_IN_USE.dec()
        self._slots.release()

    def close(self) -> None:
        """Close this process's idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg2.Error):
                conn.close()

    def run(self, work: Callable[[psycopg2.extensions.cursor], T]) -> T:
        """Run ``work`` on a borrowed connection, given back before this returns (see ``_run_with_retry``)."""
        held: list[Connection] = []

        def borrow() -> Connection:
            held.append(self.borrow())
            return held[-1]

        def give_back(conn: Connection, broken: bool) -> None:
            held.remove(conn)
            self.give_back(conn, discard=broken)

        try:
            return _run_with_retry(work, borrow, give_back)
        finally:
            for conn in held:
                self.give_back(conn)

    def ping(self) -> None:
        """Run a trivial query bounded by a short timeout; raise ``DatabaseUnavailable`` if it fails."""

        def ping(cur: psycopg2.extensions.cursor) -> None:
            # One string, one implicit transaction: SET LOCAL bounds the SELECT.
            cur.execute("SET LOCAL statement_timeout = %s; SELECT 1", (READINESS_TIMEOUT_MS,))

        self.run(ping)


@functools.cache
def bounded_cursor(
    statement_timeout_ms: int, *, lock_timeout_ms: int | None = None
) -> type[psycopg2.extensions.cursor]:
    """A cursor class whose every statement runs under these timeouts, with no session state.

    Each ``execute`` is sent as ``SET LOCAL ...; <statement>`` in one string:
    one round trip, one (implicit, or the caller's) transaction, and the
    settings end with it. A session-level ``SET`` would outlive the statement
    on whichever server connection a transaction pooler (Neon's pooled URL,
    PgBouncer in transaction mode) lent us: lost for our next transaction and
    left behind for another client's. Startup ``options`` would be refused by
    the pooler. A statement that cannot run in a transaction block (VACUUM,
    CREATE DATABASE) cannot go through this cursor; the service has none.
    """
    prefix = f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}; "
    if lock_timeout_ms is not None:
        prefix += f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}; "
    prefix_bytes = prefix.encode()

    class BoundedCursor(psycopg2.extensions.cursor):
        def execute(self, query: Any, vars: Any = None) -> None:
            if isinstance(query, bytes):
                query = prefix_bytes + query
            elif isinstance(query, str):
                query = prefix + query
            else:  # a psycopg2.sql.Composable: render it with this cursor first
                query = prefix + query.as_string(self)
            super().execute(query, vars)

    return BoundedCursor


def _looks_alive(conn: Connection) -> bool:
    """Whether an idle connection is still open, as far as a look at its socket tells.

    An idle connection in autocommit mode has nothing to read: a readable
    socket means the server closed it or sent its last words (a FATAL notice
    of shutdown). Costs one poll() system call, no round trip.
    """
    if conn.closed != 0:
        return False
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg2.Error):
        return False


def _run_with_retry(
    work: Callable[[psycopg2.extensions.cursor], T],
    borrow: Callable[[], Connection],
    give_back: Callable[[Connection, bool], None],
) -> T:
    """Run ``work`` on a borrowed connection; retry once on a fresh one if the old one broke.

    The connection is in autocommit mode: every ``execute`` commits on its own,
    and a string of several statements runs as one transaction. ``work`` must
    be safe to run twice: a connection can break after the server committed
    but before we heard so. ``give_back(conn, broken)`` is called only for a
    connection that failed; the caller returns a healthy one.
    """
    for attempt in (1, 2):
        conn = borrow()
        try:
            with conn.cursor() as cur:
                return work(cur)
        except psycopg2.extensions.QueryCanceledError:
            raise DatabaseUnavailable("database query timed out, try again shortly") from None
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn):
            # An operator's mistake, not the client's: say so in the log, plainly.
            log.error("database schema is behind the code: run `flask --app app db upgrade`")
            raise ServiceUnavailable(
                "database schema is not up to date; the operator must apply migrations"
            ) from None
        except psycopg2.Error as exc:
            alive = conn.closed == 0
            if alive and not isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                raise  # the statement's own fault (a constraint, bad data): the caller's to handle
            # A connection that died mid-statement can surface as any psycopg2
            # error (DatabaseError "server closed the connection unexpectedly"
            # after an immediate shutdown): closed means broken, whatever the type.
            give_back(conn, not alive)
            if alive or attempt == 2:
                log.warning("database error: %s", type(exc).__name__)
                raise DatabaseUnavailable() from None
            DB_RETRIES.inc()
            log.info("database connection broke, retrying on a fresh one")
    raise AssertionError("unreachable")
