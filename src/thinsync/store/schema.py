"""Tables, what is replicated and what is node-local, and the ordered migrations."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from thinsync.errors import StoreError

# Replicated: configuration state and the change log that carries it between servers.
REPLICATED_TABLES = ("objects", "changes")
# Derived from replicated data on this server, never sent: history, reference and unique-key
# indexes, and the version vector (`origins`).
DERIVED_TABLES = ("change_objects", "refs", "uniques", "origins")
# Node-local: this server's identity (and cluster key), what it knows of its peers, its event log,
# and the terminals' live status as this server saw it (flushed from memory periodically).
LOCAL_TABLES = ("node", "peers", "events", "terminal_status")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run statements one by one (executescript would commit our transaction)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _m1_initial(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE node (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE objects (
            kind TEXT NOT NULL, name TEXT NOT NULL,
            vals TEXT NOT NULL, stamps TEXT NOT NULL, tomb TEXT,
            version TEXT NOT NULL, live INTEGER NOT NULL, created TEXT NOT NULL,
            PRIMARY KEY (kind, name)
        ) WITHOUT ROWID;
        CREATE INDEX objects_live ON objects (kind, live, name);
        CREATE TABLE changes (
            id INTEGER PRIMARY KEY,
            origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL,
            author TEXT NOT NULL, summary TEXT NOT NULL, items TEXT NOT NULL,
            applied_at REAL NOT NULL,
            UNIQUE (origin, seq)
        );
        CREATE TABLE change_objects (
            kind TEXT NOT NULL, name TEXT NOT NULL, change_id INTEGER NOT NULL,
            PRIMARY KEY (kind, name, change_id)
        ) WITHOUT ROWID;
        CREATE TABLE refs (
            target_kind TEXT NOT NULL, target_name TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
            PRIMARY KEY (target_kind, target_name, kind, name)
        ) WITHOUT ROWID;
        CREATE INDEX refs_source ON refs (kind, name);
        CREATE TABLE uniques (
            kind TEXT NOT NULL, label TEXT NOT NULL, value TEXT NOT NULL, name TEXT NOT NULL,
            PRIMARY KEY (kind, label, value, name)
        ) WITHOUT ROWID;
        CREATE INDEX uniques_name ON uniques (kind, name);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY, time REAL NOT NULL, category TEXT NOT NULL,
            level TEXT NOT NULL, message TEXT NOT NULL, data TEXT NOT NULL
        );
        CREATE INDEX events_category ON events (category, id);
        """,
    )


def _m2_replication(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        ALTER TABLE objects ADD COLUMN problems TEXT;
        CREATE TABLE origins (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO origins (origin, seq) SELECT origin, MAX(seq) FROM changes GROUP BY origin;
        CREATE TABLE peers (
            node_id TEXT PRIMARY KEY, name TEXT NOT NULL, acked TEXT NOT NULL, updated REAL NOT NULL
        ) WITHOUT ROWID
        """,
    )


def _m3_terminal_status(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE terminal_status (mac TEXT PRIMARY KEY, last_seen REAL, booted_from TEXT, address TEXT, "
        "state TEXT, uptime_s REAL, unassigned INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    )


def _m4_problems_index(conn: sqlite3.Connection) -> None:
    # Lets every local write ask "is anything broken?" without scanning all objects.
    conn.execute("CREATE INDEX objects_with_problems ON objects (kind, name) WHERE problems IS NOT NULL")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("initial", _m1_initial),
    ("replication", _m2_replication),
    ("terminal status", _m3_terminal_status),
    ("problems index", _m4_problems_index),
]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='_migrations'").fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM _migrations").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply every migration above the stored version, each in its own transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)"
    )
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"this data directory has schema version {version}, newer than this thinsync "
            f"understands ({SCHEMA_VERSION}); upgrade thinsync before starting it here"
        )
    for number in range(version + 1, target + 1):
        name, step = MIGRATIONS[number - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            conn.execute(
                "INSERT INTO _migrations (version, name, applied_at) VALUES (?, ?, ?)", (number, name, time.time())
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return target
