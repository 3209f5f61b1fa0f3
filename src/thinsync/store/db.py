"""SQLite connections: one writer thread owning the write connection, per-thread read connections."""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from thinsync.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
AfterCommit = Callable[[], None]
# Jobs committed together in one transaction (group commit); each has its own savepoint.
MAX_BATCH = 256
WRITER_CACHE_KIB = 32 * 1024


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with our per-connection pragmas; transactions are explicit."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    except sqlite3.OperationalError as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


def open_database(path: Path) -> None:
    """Create the file if needed and switch it to WAL (a persistent property of the file)."""
    conn = connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"cannot put {path} in WAL mode (got {mode})")
    finally:
        conn.close()


class Writer:
    """Owns the only write connection; runs jobs in `BEGIN IMMEDIATE` transactions in order.

    Jobs that arrive together are committed together (one fsync), each inside its own
    savepoint, so one failing job leaves no trace and does not affect the others. A job's
    future resolves only after its transaction is durable; its after-commit callback runs then.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="thinsync-writer", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.conn: sqlite3.Connection | None = None
        self.commits = 0

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, job: Job) -> Future[Any]:
        """Queue a job; the future holds (result, after_commit) semantics handled by the caller."""
        future: Future[Any] = Future()
        if not self._thread.is_alive():
            future.set_exception(StoreError("the store is closed"))
            return future
        self._queue.put((job, future))
        return future

    def run(self, job: Job) -> Any:
        """Submit a job and wait for it (for use outside the event loop)."""
        return self.submit(job).result()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self.conn = connect(self._path)
            # The writer walks the log's and the objects' B-trees on every commit; SQLite's default
            # 2 MiB page cache made a long catch-up re-read pages it had just written.
            self.conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        conn = self.conn
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._run_batch(conn, batch)
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[tuple[Job, Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for _, future in batch:
                future.set_exception(StoreError(f"cannot start a write transaction: {exc}"))
            return
        for index, (job, future) in enumerate(batch):
            if not future.set_running_or_notify_cancel():
                continue
            savepoint = f"job{index}"
            conn.execute(f"SAVEPOINT {savepoint}")
            try:
                result = job(conn)
            except BaseException as exc:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
                outcomes.append((future, False, exc))
            else:
                conn.execute(f"RELEASE {savepoint}")
                outcomes.append((future, True, result))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed, %d jobs rolled back: %s", len(outcomes), exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for future, _ok, _ in outcomes:
                future.set_exception(StoreError(f"the change could not be saved: {exc}"))
            return
        self.commits += 1
        for future, ok, value in outcomes:
            if ok:
                after = getattr(value, "after_commit", None)
                if after is not None:
                    try:
                        after()
                    except Exception:  # a subscriber's failure must not break the writer
                        log.exception("after-commit callback failed")
                future.set_result(value)
            else:
                future.set_exception(value)


class Readers:
    """Short-lived read transactions on one connection per thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one read transaction (a consistent snapshot), kept as short as `fn`."""
        conn = self.conn()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.ProgrammingError):
                    conn.close()
            self._all.clear()
