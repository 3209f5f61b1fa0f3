"""Migrations reach the fresh schema from every older version; settings precedence and errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from thinsync.errors import Invalid, StoreError
from thinsync.settings import Settings, parse_hostport, setting_names
from thinsync.store import schema


def _schema_of(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
    return [(n, s) for n, s in rows]


@pytest.mark.parametrize("start", range(schema.SCHEMA_VERSION + 1))
def test_every_old_schema_migrates_to_the_fresh_schema(tmp_path: Path, start: int) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    schema.migrate(fresh)
    old = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    schema.migrate(old, target=start)
    assert schema.current_version(old) == start
    schema.migrate(old)
    assert _schema_of(old) == _schema_of(fresh)
    assert schema.current_version(old) == schema.SCHEMA_VERSION


def test_a_newer_schema_is_refused_with_a_plain_message(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "new.db", isolation_level=None)
    schema.migrate(conn)
    conn.execute("INSERT INTO _migrations VALUES (?, 'future', 0)", (schema.SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this thinsync"):
        schema.migrate(conn)


def test_every_table_is_either_replicated_derived_or_local(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    schema.migrate(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} - {"_migrations"}
    listed = set(schema.REPLICATED_TABLES) | set(schema.DERIVED_TABLES) | set(schema.LOCAL_TABLES)
    assert tables == listed


def test_settings_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    (tmp_path / "thinsync.toml").write_text('listen = "127.0.0.1:1111"\ntoken_ttl_s = 60\nlog_level = "DEBUG"\n')
    env = {"THINSYNC_LISTEN": "127.0.0.1:2222", "THINSYNC_TOKEN_TTL_S": "90"}
    s = Settings.load(tmp_path, {"listen": "127.0.0.1:3333"}, env=env)
    assert s.listen == "127.0.0.1:3333" and s.token_ttl_s == 90 and s.log_level == "DEBUG"
    assert Settings.load(tmp_path, env={}).listen == "127.0.0.1:1111"
    assert Settings.load(tmp_path / "none", env={}).listen == "0.0.0.0:2031"


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = Settings.load(tmp_path, env={})
    with pytest.raises(AttributeError):
        s.listen = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("nope = 1\n", "unknown setting"),
        ("listen = \n", "not valid TOML"),
        ('token_ttl_s = "soon"\n', "must be a whole number"),
    ],
)
def test_bad_settings_files_are_refused_plainly(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "thinsync.toml").write_text(content)
    with pytest.raises(Invalid, match=message):
        Settings.load(tmp_path, env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:0", ("127.0.0.1", 0)), ("host", ("host", 2031)), ("[::1]:80", ("::1", 80))],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", [":80", "host:99999", "host:x"])
def test_parse_hostport_refuses_nonsense(text: str) -> None:
    with pytest.raises(Invalid):
        parse_hostport(text)


def test_setting_names_lists_the_tunables() -> None:
    assert "listen" in setting_names() and "data_dir" not in setting_names()
