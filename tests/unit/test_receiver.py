"""The receiving end of a link, driven frame by frame: pages of changes that arrive together are
applied together and each is acknowledged in order; a refused page ends the session and nothing after
it is acknowledged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from thinsync import jsonfmt
from thinsync.clock import FakeClock
from thinsync.events.log import EventLog
from thinsync.store import ChangeRequest, ChangeSet, Op, Store
from thinsync.sync import protocol as p
from thinsync.sync.inbound import Receiver, Transport

KEY = "cd" * 32
NONCE = "nonce-1"


def open_store(path: Path, name: str) -> Store:
    store = Store.open(path, FakeClock(1_800_000_000.0), create=True)
    store.create_identity(name)
    return store


def pages_of(src: Store, size: int) -> list[list[ChangeSet]]:
    sets, _ = src.log_page(0, {}, 1000)
    return [sets[i : i + size] for i in range(0, len(sets), size)]


async def session(
    dst: Store, pages: list[list[ChangeSet]], versions: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Say hello, send every page at once (they queue behind each other), return what came back."""
    inbox: asyncio.Queue[str] = asyncio.Queue()
    replies: list[dict[str, Any]] = []
    peer = p.FrameCodec(KEY, NONCE, "c")
    expected_acks = len(pages)

    said_hello = asyncio.Event()

    async def send(frame: str) -> None:
        replies.append(peer.decode(frame))
        said_hello.set()

    receiver = Receiver(dst, EventLog(dst, 1000), 3600.0, lambda *args: None)
    task = asyncio.create_task(receiver.serve(Transport(inbox.get, send), KEY, p.PeerClaim("peer-node", NONCE)))
    await asyncio.wait_for(said_hello.wait(), 10)
    assert replies[0]["t"] == "hello"
    await inbox.put(peer.encode({"t": "hello", "name": "tm-a", **(versions or p.versions()), "vector": {}}))
    for page in pages:
        body = jsonfmt.dumpb({"t": "changes", "sets": [p.set_to_json(c) for c in page]})
        await inbox.put(peer.encode_json(body))
    for _ in range(400):
        if task.done() or sum(1 for r in replies if r["t"] in ("ack", "error")) >= expected_acks:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # anything sent late would show up here
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return replies[1:]


def test_pages_arriving_together_are_applied_and_acknowledged_in_order(tmp_path: Path) -> None:
    src, dst = open_store(tmp_path / "a.db", "tm-a"), open_store(tmp_path / "b.db", "tm-b")
    try:
        for i in range(6):
            src.commit_sync(ChangeRequest("t", f"w{i}", (Op("users", f"u-{i}", "put", {"card_id": f"c{i}"}),)))
        origin = src.require_identity().origin
        commits = dst.writer.commits
        replies = asyncio.run(session(dst, pages_of(src, 2)))
        assert [r["t"] for r in replies] == ["ack", "ack", "ack"]
        # the three pages were waiting together: one writer job each, one transaction for all
        assert dst.writer.commits - commits == 1
        assert [r["vector"][origin] for r in replies] == [2, 4, 6]
        assert dst.vector()[origin] == 6
        assert dst.digest().hex() == src.digest().hex()
    finally:
        src.close()
        dst.close()


def test_a_refused_page_ends_the_session_and_later_pages_are_not_acknowledged(tmp_path: Path) -> None:
    src, dst = open_store(tmp_path / "a.db", "tm-a"), open_store(tmp_path / "b.db", "tm-b")
    try:
        for i in range(8):
            src.commit_sync(ChangeRequest("t", f"w{i}", (Op("users", f"u-{i}", "put", {}),)))
        origin = src.require_identity().origin
        first, _second, third, fourth = pages_of(src, 2)
        replies = asyncio.run(session(dst, [first, third, fourth]))  # the second page is lost
        assert [r["t"] for r in replies] == ["ack", "error"]
        assert replies[0]["vector"][origin] == 2
        assert replies[1]["code"] == "gap"
        assert dst.vector()[origin] == 2  # nothing of the pages after the gap was applied
    finally:
        src.close()
        dst.close()


def test_a_peer_on_another_protocol_or_schema_version_is_refused_with_both_named(tmp_path: Path) -> None:
    src, dst = open_store(tmp_path / "a.db", "tm-a"), open_store(tmp_path / "b.db", "tm-b")
    try:
        src.commit_sync(ChangeRequest("t", "w", (Op("users", "u-1", "put", {}),)))
        ours = p.versions()
        newer = {"protocol": ours["protocol"] + 1, "schema": ours["schema"] + 1}
        replies = asyncio.run(session(dst, pages_of(src, 1), versions=newer))
        assert [r["t"] for r in replies] == ["error"]
        assert replies[0]["code"] == "version"
        message = replies[0]["message"]
        assert f"protocol {newer['protocol']} there, {ours['protocol']} here" in message
        assert f"schema {newer['schema']} there, {ours['schema']} here" in message
        assert src.require_identity().origin not in dst.vector()  # nothing was applied
    finally:
        src.close()
        dst.close()


def test_two_live_servers_with_one_node_id_are_refused_and_a_restart_is_not(tmp_path: Path) -> None:
    dst = open_store(tmp_path / "b.db", "tm-b")

    async def connect(receiver: Receiver, origin: str, nonce: str) -> tuple[asyncio.Task[None], list[dict[str, Any]]]:
        inbox: asyncio.Queue[str] = asyncio.Queue()
        replies: list[dict[str, Any]] = []
        peer = p.FrameCodec(KEY, nonce, "c")

        async def send(frame: str) -> None:
            replies.append(peer.decode(frame))

        claim = p.PeerClaim("node-a", nonce)
        task = asyncio.create_task(receiver.serve(Transport(inbox.get, send), KEY, claim))
        hello = {"t": "hello", "name": "tm-a", "origin": origin, **p.versions(), "vector": {}}
        await inbox.put(peer.encode(hello))
        for _ in range(200):
            if task.done() or len(replies) >= 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        return task, replies

    async def scenario() -> None:
        receiver = Receiver(dst, EventLog(dst, 1000), 3600.0, lambda *args: None)
        first, _ = await connect(receiver, "node-a.1", "n1")
        assert not first.done()
        # a copy of node-a's data dir, running at the same time: its own incarnation, the same node id
        second, replies = await connect(receiver, "node-a.2", "n2")
        assert second.done()
        assert [r["t"] for r in replies] == ["hello", "error"]
        assert replies[1]["code"] == "duplicate_node" and "node-a" in replies[1]["message"]
        # once the first session is gone (the server stopped and started again), the new one is served
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        third, replies = await connect(receiver, "node-a.3", "n3")
        assert not third.done() and [r["t"] for r in replies] == ["hello"]
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)

    try:
        asyncio.run(scenario())
        events = dst.read(lambda c: c.execute("SELECT level, message FROM events WHERE category='sync'").fetchall())
        assert any(level == "error" and "node-a" in message for level, message in events)
    finally:
        dst.close()
