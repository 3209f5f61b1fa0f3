"""SyncService: the cluster, its links, the status page, conflicts, modes and pairing."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx2

from thinsync import __version__
from thinsync.auth.service import AuthService
from thinsync.config.service import ConfigService
from thinsync.errors import Conflict, Invalid, NotFound, ReadOnly, Unauthorized, Unavailable
from thinsync.events.log import EventLog
from thinsync.model.registry import KINDS
from thinsync.model.validate import SINGLETON_NAME, validate_body
from thinsync.settings import Settings
from thinsync.store import ChangeSet, Op, Store, wall_iso
from thinsync.store.hlc import stamp_hlc, stamp_origin
from thinsync.sync import manual, pairing
from thinsync.sync import protocol as p
from thinsync.sync.inbound import Receiver, Transport
from thinsync.sync.link import Cluster, Pusher
from thinsync.sync.state import PeerState

log = logging.getLogger(__name__)
TOMBSTONE_CHECK_S = 60.0
PEER_SAVE_S = 1.0


class SyncService:
    def __init__(
        self, store: Store, config: ConfigService, auth: AuthService, events: EventLog, settings: Settings
    ) -> None:
        self.store = store
        self.config = config
        self.auth = auth
        self.events = events
        self.settings = settings
        self.codes = pairing.PairingCodes()
        self.nonces = p.NonceCache()
        self.peers: dict[str, PeerState] = {}
        self._pushers: dict[str, Pusher] = {}
        self._cluster: Cluster | None = None
        self._server_list: dict[str, Any] = {}
        self._pairing: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconcile_lock = asyncio.Lock()
        self._housekeeper: asyncio.Task[None] | None = None
        # Rules another service (licensing) sets on server-list changes: (current, new) -> raises.
        self.check_server_list: Callable[[dict[str, Any], dict[str, Any]], None] = lambda current, new: None
        self.receiver = Receiver(store, events, settings.max_clock_skew_s, self._on_inbound)
        self._peer_saved: dict[str, float] = {}
        config.gate = self.write_gate

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._cluster = await asyncio.to_thread(self._load_cluster)
        self._server_list = await asyncio.to_thread(self._read_server_list)
        self.store.subscribe(self._on_change, kinds=("server-list",))
        await self.reconcile()
        self._housekeeper = asyncio.create_task(self._housekeeping())

    async def stop(self) -> None:
        self.store.unsubscribe(self._on_change)
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        for pusher in list(self._pushers.values()):
            await pusher.stop()
        self._pushers.clear()

    def _load_cluster(self) -> Cluster | None:
        cluster_id = self.store.node_value("cluster_id")
        key = self.store.node_value("cluster_key")
        return Cluster(cluster_id, key) if cluster_id and key else None

    def cluster(self) -> Cluster | None:
        return self._cluster

    def _read_server_list(self) -> dict[str, Any]:
        state = self.store.get("server-list", SINGLETON_NAME)
        if state.live:
            return dict(state.vals)
        return KINDS["server-list"].model().model_dump(mode="json")

    def _on_change(self, changes: list[ChangeSet]) -> None:
        if self._loop is not None:  # called only for commits that touch the server list
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._refresh()))

    async def _refresh(self) -> None:
        self._server_list = await asyncio.to_thread(self._read_server_list)
        await self.reconcile()

    @property
    def server_list(self) -> dict[str, Any]:
        return self._server_list

    def pairing_with(self) -> str | None:
        """The primary this server is pairing with right now (edits refused meanwhile), or None."""
        return self._pairing

    def my_role(self) -> str:
        sl = self._server_list
        if not sl.get("auto_sync"):
            return "standalone"
        me = pairing.find_me(sl, self.store.require_identity().name)
        return me["role"] if me else "standalone"

    async def reconcile(self) -> None:
        """Start and stop links so that there is one per other server of the list."""
        async with self._reconcile_lock:
            sl = self._server_list
            me = self.store.require_identity().name.lower()
            wanted = {}
            if sl.get("auto_sync") and self._cluster is not None:
                wanted = {e["name"]: e for e in pairing.entries(sl) if e["name"].lower() != me}
            for name in list(self._pushers):
                entry = wanted.get(name)
                peer = self.peers.get(name)
                if entry is None or peer is None or (entry["address"], entry["port"]) != (peer.address, peer.port):
                    await self._pushers.pop(name).stop()
                    if entry is None:
                        self.peers.pop(name, None)
            for name, entry in wanted.items():
                peer = self.peers.get(name)
                if peer is None or (peer.address, peer.port) != (entry["address"], entry["port"]):
                    peer = PeerState(name, entry["address"], entry["port"], entry["role"])
                    self.peers[name] = peer
                peer.role = entry["role"]
                if name not in self._pushers:
                    pusher = Pusher(
                        self.store,
                        peer,
                        self.cluster,
                        self.events,
                        self.settings.max_clock_skew_s,
                        self.settings.digest_interval_s,
                        lambda: None,
                        self._rolled_back,
                    )
                    self._pushers[name] = pusher
                    pusher.start()

    async def _rolled_back(self) -> None:
        """A peer showed this server's data was rolled back: write under a new origin from now on, and
        make the peers say hello again (what they learnt of this server's origin is stale)."""
        await asyncio.to_thread(self.store.new_incarnation)
        self.receiver.drop_sessions()

    # ------------------------------------------------------------------ edits allowed here?

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(TOMBSTONE_CHECK_S)
            try:
                removed = await self.collect_tombstones()
                if removed:
                    log.info("released %d tombstones every member holds", removed)
                dropped = await self.truncate_log()
                if dropped:
                    self.events.record("sync", f"dropped {dropped} change sets older than the log retention")
            except Exception:
                log.exception("housekeeping failed")

    async def truncate_log(self) -> int:
        """Apply the log retention (setting log_retention_days; 0 keeps everything)."""
        days = self.settings.log_retention_days
        if days <= 0:
            return 0
        covered = await self._covered()
        if covered is None:
            return 0
        return await self.store.truncate_log(time.time() - days * 86400, covered)

    async def _covered(self) -> dict[str, int] | None:
        """The vector every member holds, when every member is connected (else None)."""
        mine = await asyncio.to_thread(self.store.vector)
        vectors = [mine]
        if self._server_list.get("auto_sync"):
            if not self.peers or not all(peer.connected and peer.theirs for peer in self.peers.values()):
                return None
            vectors += [dict(peer.theirs) for peer in self.peers.values()]
        return {o: min(v.get(o, 0) for v in vectors) for o in set().union(*vectors)}

    async def collect_tombstones(self) -> int:
        """Drop deletes every member holds, once this server holds all they hold (so no concurrent
        update can still arrive that the tombstone would have to win against)."""
        mine = await asyncio.to_thread(self.store.vector)
        vectors = [mine]
        if self._server_list.get("auto_sync"):
            if not self.peers or not all(peer.connected and peer.theirs for peer in self.peers.values()):
                return 0
            vectors += [dict(peer.theirs) for peer in self.peers.values()]
            if not all(p.covers(mine, v) for v in vectors):
                return 0
        covered = {o: min(v.get(o, 0) for v in vectors) for o in set().union(*vectors)}
        return await self.store.collect_tombstones(covered)

    def write_gate(self) -> None:
        if self._pairing:
            raise Unavailable(f"this server is pairing with {self._pairing}; edits are refused until it finishes")
        sl = self._server_list
        if sl.get("auto_sync") and sl.get("mode") == "mirrored" and self.my_role() == "secondary":
            primary = sl.get("primary") or {}
            raise ReadOnly(
                f"this server is the mirrored secondary and does not accept edits; make changes on the primary "
                f"'{primary.get('name')}' (http://{primary.get('address')}:{primary.get('port')}/)",
                primary=primary,
            )

    # ------------------------------------------------------------------ peers talking to us

    def verify_peer(self, headers: Mapping[str, str], method: str, path: str, body: bytes) -> p.PeerClaim:
        cluster = self._cluster
        try:
            return p.verify_request(
                cluster.key if cluster else None,
                cluster.cluster_id if cluster else None,
                headers,
                method,
                path,
                body,
                self.nonces,
                time.time(),
            )
        except (Unauthorized, p.PeerRefused) as exc:
            self.events.record("sync", f"refused a peer request to {path}: {exc.message}", level="warning")
            raise

    async def serve_link(self, transport: Transport, claim: p.PeerClaim) -> None:
        cluster = self._cluster
        if cluster is None:
            raise p.PeerRefused("this server is not paired")
        await self.receiver.serve(transport, cluster.key, claim)

    def _on_inbound(self, node_id: str, name: str | None, vector: dict[str, int] | None, connected: bool) -> None:
        for peer in self.peers.values():
            if peer.node_id == node_id or (name and peer.name.lower() == name.lower()):
                came_up = connected and not peer.inbound
                peer.inbound = connected
                if vector:
                    peer.learn(vector)
                if peer.node_id is None:
                    peer.node_id = node_id
                pusher = self._pushers.get(peer.name)
                if came_up and pusher is not None:
                    pusher.retry_now()  # the peer is back: push to it now, not at the next retry
                if vector and pusher is not None:
                    pusher.settle_soon()
        # The peer's vector is kept on disk for tombstone collection; an older one only delays that,
        # so it is written at most once a second, not once per page of changes.
        now = time.monotonic()
        if name and connected and now - self._peer_saved.get(node_id, -PEER_SAVE_S) >= PEER_SAVE_S:
            self._peer_saved[node_id] = now
            self.store.save_peer(node_id, name, vector or {})

    def hello(self) -> dict[str, Any]:
        identity = self.store.require_identity()
        return {"node_id": identity.node_id, "name": identity.name, "version": __version__, **p.versions()}

    # ------------------------------------------------------------------ status

    async def status(self) -> dict[str, Any]:
        identity = self.store.require_identity()
        digest, mine = await asyncio.to_thread(self.store.digest_at)
        conflicts = await asyncio.to_thread(self.store.conflicts)
        now = time.time()
        peers = [peer.to_status(mine, now) for peer in self.peers.values()]
        sl = self._server_list
        in_sync = bool(sl.get("auto_sync")) and bool(peers) and all(s["state"] == "in-sync" for s in peers)
        return {
            "auto_sync": bool(sl.get("auto_sync")),
            "mode": sl.get("mode", "redundant"),
            "role": self.my_role(),
            "in_sync": in_sync,
            "digest": digest.hex(),
            "node": {
                "name": identity.name,
                "node_id": identity.node_id,
                "incarnation": identity.incarnation,
                "version": __version__,
                **p.versions(),
                "vector": mine,
                "pairing": self._pairing,
            },
            "peers": peers,
            "conflicts_open": len(conflicts),
        }

    def register_metrics(self, metrics: Any) -> None:
        """Lag, queue, connection, repairs and conflicts as Prometheus gauges (read at scrape time)."""

        def per_peer(attr: str) -> Any:
            def read() -> list[tuple[list[str], float]]:
                mine = self.store.vector()
                out = []
                for peer in self.peers.values():
                    status = peer.to_status(mine, time.time())
                    out.append(([peer.name], float(status[attr] or 0)))
                return out

            return read

        metrics.add_gauges(
            "thinsync_sync_lag_changes", "Change sets a peer does not hold yet", ["peer"], per_peer("lag_changes")
        )
        metrics.add_gauges(
            "thinsync_sync_lag_seconds",
            "Age of the oldest change a peer has not acknowledged",
            ["peer"],
            per_peer("lag_seconds"),
        )
        metrics.add_gauges(
            "thinsync_sync_connected", "1 when the link to a peer is up", ["peer"], per_peer("connected")
        )
        metrics.add_gauges(
            "thinsync_sync_repairs", "Digest repairs with a peer since start", ["peer"], per_peer("repairs")
        )
        metrics.add_gauges(
            "thinsync_sync_conflicts_open",
            "Open conflicts in the inbox",
            [],
            lambda: [([], float(len(self.store.conflicts())))],
        )

    def sync_now(self) -> None:
        for pusher in self._pushers.values():
            pusher.poke()

    # ------------------------------------------------------------------ conflicts

    def _server_name(self, origin: str) -> str:
        node = origin.split(".")[0]
        identity = self.store.require_identity()
        if node == identity.node_id:
            return identity.name
        for peer in self.peers.values():
            if peer.node_id == node:
                return peer.name
        known = self.store.peers().get(node)
        return known["name"] if known else node

    def _view(self, c: dict[str, Any]) -> dict[str, Any]:
        values = []
        for entry in c.get("entries") or []:
            stamp = entry.get("stamp")
            values.append(
                {
                    "value": entry.get("value"),
                    "origin": stamp_origin(stamp) if stamp else None,
                    "server": self._server_name(stamp_origin(stamp)) if stamp else None,
                    "time": wall_iso(stamp_hlc(stamp)) if stamp else None,
                }
            )
        closed = c.get("closed")
        return {
            "id": c["id"],
            "kind": c["target_kind"],
            "name": c["target_name"],
            "field": c["field"],
            "values": values,
            "winner": values[0]["value"] if values and c.get("winner") else None,
            "state": closed["state"] if closed else "open",
            "closed": closed,
        }

    async def conflicts(self, open_only: bool = True) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(self.store.conflicts, open_only)
        return [self._view(c) for c in found]

    async def resolve(self, conflict_id: str, keep: str, author: str) -> dict[str, Any]:
        if keep not in ("winner", "other"):
            raise Invalid("keep must be 'winner' or 'other'")
        state = await asyncio.to_thread(self.store.get, "conflicts", conflict_id)
        if not state.live:
            raise NotFound(f"there is no conflict '{conflict_id}'")
        c = {"id": conflict_id, **state.vals}
        if c.get("closed"):
            raise Conflict(f"conflict {conflict_id} is already {c['closed']['state']}")
        if c["field"] == "validity":
            raise Conflict(
                f"this conflict closes by itself once {c['target_kind']} '{c['target_name']}' is fixed: "
                f"{c['entries'][0]['value']}"
            )
        closing = Op(
            "conflicts",
            conflict_id,
            "patch",
            {"closed": {"state": "resolved", "at": wall_iso(int(time.time() * 1000) << 16), "by": author}},
        )
        ops = [closing]
        target = await asyncio.to_thread(self.store.get, c["target_kind"], c["target_name"])
        if c["field"] == "*":
            if keep == "other":
                if not target.live:
                    raise Conflict("the object was deleted; restore it from its history (revert) to keep the change")
                ops.insert(0, Op(c["target_kind"], c["target_name"], "delete"))
        elif target.live:
            if target.stamps.get(c["field"]) != c.get("winner"):
                # The field changed after this conflict: its values are history now, and writing either
                # back would overwrite the newer value. The conflict is closed as superseded instead.
                stale = {"state": "superseded", "at": closing.body["closed"]["at"], "by": author}
                await self.config.write(
                    author,
                    f"close out-of-date conflict {conflict_id}",
                    [Op("conflicts", conflict_id, "patch", {"closed": stale})],
                )
                return {
                    **self._view({**c, "closed": stale}),
                    "note": f"field {c['field']} changed after this conflict; the current value was kept",
                }
            value = c["entries"][0 if keep == "winner" else 1]["value"]
            body = {**target.vals, c["field"]: value}
            ops.insert(0, Op(c["target_kind"], c["target_name"], "put", body, force=(c["field"],)))
        await self.config.write(author, f"resolve conflict {conflict_id} ({keep})", ops)
        self.events.record(
            "sync",
            f"{author} resolved conflict on {c['target_kind']} '{c['target_name']}' "
            f"field {c['field']} keeping the {keep}",
        )
        return self._view({**c, "closed": {"state": "resolved"}})

    # ------------------------------------------------------------------ modes

    async def promote(self, author: str) -> dict[str, Any]:
        sl = dict(self._server_list)
        if not sl.get("auto_sync"):
            raise Conflict("automatic synchronization is off: there is no primary to take over from")
        if self.my_role() != "secondary":
            raise Conflict(f"only the secondary can be promoted; this server is the {self.my_role()}")
        sl["primary"], sl["secondary"] = sl["secondary"], sl["primary"]
        await self.config.write(
            author, "promote secondary to primary", [Op("server-list", SINGLETON_NAME, "put", sl)], gated=False
        )
        self.events.record("sync", f"{author} promoted this server to primary", level="warning")
        await self._refresh()
        return await self.config.get("server-list")

    # ------------------------------------------------------------------ server list and pairing

    async def set_server_list(self, body: Any, author: str, if_match: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Invalid("the server list must be a JSON object")
        body = dict(body)
        peer_auth = body.pop("peer_auth", None)
        spec = KINDS["server-list"]
        new = validate_body(spec, SINGLETON_NAME, body)
        current = self._server_list
        self.check_server_list(current, new)
        identity = self.store.require_identity()
        joining = self.needs_pairing(new)
        if new["auto_sync"]:
            me = pairing.find_me(new, identity.name)
            if me is None:
                names = ", ".join(e["name"] for e in pairing.entries(new))
                raise Invalid(f"this server is '{identity.name}', but the list names {names}: one must be this server")
        if joining:
            await self._pair(new, pairing.check_auth_shape(peer_auth), author)
        elif current.get("auto_sync") and not new["auto_sync"]:
            await self._leave(new, author)
        await self.config.write(
            author,
            "set server list",
            [Op("server-list", SINGLETON_NAME, "put", new, if_match)],
            gated=not joining and self.my_role() != "secondary",
        )
        if current.get("auto_sync") and not new["auto_sync"]:
            await self._forget_cluster()
        await self._refresh()
        return await self.config.get("server-list")

    async def _forget_cluster(self) -> None:
        """Sync is off: drop the cluster key, so pairing again makes a new one."""
        self._cluster = None
        await asyncio.to_thread(self.store.set_node_values, {"cluster_id": None, "cluster_key": None})

    def needs_pairing(self, new: dict[str, Any]) -> bool:
        """True when saving `new` makes this server pair (auto-sync turned on, or other members):
        the save then needs the other server's credentials or pairing code."""
        current = self._server_list
        return bool(new.get("auto_sync")) and (
            not current.get("auto_sync") or self._cluster is None or _members(new) != _members(current)
        )

    async def _pair(self, new: dict[str, Any], peer_auth: dict[str, Any], author: str) -> None:
        identity = self.store.require_identity()
        me = pairing.find_me(new, identity.name)
        assert me is not None
        cluster = self._cluster or pairing.new_cluster()
        previous = self._cluster
        await asyncio.to_thread(
            self.store.set_node_values, {"cluster_id": cluster.cluster_id, "cluster_key": cluster.key}
        )
        self._cluster = cluster
        try:
            for entry in pairing.entries(new):
                if entry["name"].lower() != identity.name.lower():
                    reply = await pairing.contact(entry, peer_auth, cluster, me, self.store, new)
                    self.store.save_peer(reply["node_id"], reply["name"], {})
                    self.events.record("sync", f"paired with {entry['name']} (node {reply['node_id']})")
            if me["role"] != "primary":
                await self._install(new["primary"], cluster)
        except Exception:
            self._cluster = previous
            await asyncio.to_thread(
                self.store.set_node_values,
                {
                    "cluster_id": previous.cluster_id if previous else None,
                    "cluster_key": previous.key if previous else None,
                },
            )
            raise

    async def _install(self, primary: dict[str, Any], cluster: Cluster) -> None:
        self._pairing = primary["name"]
        try:
            backup = await pairing.install_primary(
                self.store, self.settings, primary, cluster, f"before pairing with {primary['name']}"
            )
            self.events.record(
                "sync",
                f"configuration replaced by the primary {primary['name']}'s (backup {backup['id']} first)",
                level="warning",
            )
            await self._restart_links()
        finally:
            self._pairing = None

    async def _restart_links(self) -> None:
        """After this server's configuration and log were replaced: peers must say hello again (what they
        learnt of this server's vector is stale) and outbound links restart from the new log (its
        positions were reused). reconcile() starts them again."""
        self.receiver.drop_sessions()
        async with self._reconcile_lock:
            for pusher in self._pushers.values():
                await pusher.stop()
            self._pushers.clear()

    async def accept_pair(self, body: Mapping[str, Any], client: str) -> dict[str, Any]:
        """Another server asks this one to join its cluster (POST /peer/v1/pair)."""
        auth = body.get("auth") or {}
        if "pairing_code" in auth:
            ok = self.codes.take(str(auth["pairing_code"]))
        else:
            try:
                principal = await self.auth.login(str(auth.get("username")), str(auth.get("password")))
                ok = bool(principal)
            except Unauthorized:
                ok = False
            if ok:
                who = await self.auth.authenticate_token(principal[0])
                ok = "admin" in who.permissions
        if not ok:
            self.events.record("sync", f"refused a pairing request from {client}: wrong credentials", level="warning")
        pairing.require_credentials(ok)
        mismatch = p.version_mismatch(body)
        if mismatch:
            raise Conflict(f"cannot pair: {mismatch}; upgrade both servers to the same release first")
        identity = self.store.require_identity()
        node = body.get("node") or {}
        if node.get("node_id") == identity.node_id:
            raise Conflict("the other server has this server's node id (a copied data directory); re-initialise it")
        server_list = validate_body(KINDS["server-list"], SINGLETON_NAME, body.get("server_list"))
        me = pairing.find_me(server_list, identity.name)
        if me is None:
            raise Invalid(f"the server list does not name this server ('{identity.name}')")
        cluster = Cluster(str(body["cluster_id"]), str(body["cluster_key"]))
        await asyncio.to_thread(
            self.store.set_node_values, {"cluster_id": cluster.cluster_id, "cluster_key": cluster.key}
        )
        self._cluster = cluster
        self.store.save_peer(str(node.get("node_id")), str(node.get("name")), {})
        self.events.record("sync", f"joined the cluster of {node.get('name')} ({client})")
        if me["role"] != "primary":
            await self._install(server_list["primary"], cluster)
        await self._adopt_joined_list(server_list, str(node.get("name")))
        return self.hello()

    async def _adopt_joined_list(self, server_list: dict[str, Any], by: str) -> None:
        """Save the server list this server just joined, so it knows its role and links at once: the
        primary's snapshot predates the list, whose own change may be late (or refused, when the
        clocks disagree) and a mirrored secondary must refuse edits from the start."""
        await self.config.write(
            f"peer {by}",
            f"joined the cluster of {by}",
            [Op("server-list", SINGLETON_NAME, "put", server_list)],
            gated=False,
        )
        await self._refresh()

    async def _leave(self, new: dict[str, Any], author: str) -> None:
        """Auto-sync off: tell the others (best effort); both keep their configuration."""
        cluster = self._cluster
        identity = self.store.require_identity()
        if cluster is not None:
            for entry in pairing.entries(self._server_list):
                if entry["name"].lower() == identity.name.lower():
                    continue
                call = pairing.PeerCall(entry["address"], entry["port"], cluster, identity.node_id)
                try:
                    await call.request(
                        "POST", "/peer/v1/unpair", {"by": identity.name}, limits=httpx2.Timeout(5.0, connect=2.0)
                    )
                except Exception as exc:  # the other may be down; it learns through replication later
                    self.events.record(
                        "sync", f"could not tell {entry['name']} that sync is off: {exc}", level="warning"
                    )
        self.events.record("sync", f"{author} turned automatic synchronization off")

    async def accept_unpair(self, by: str) -> None:
        sl = dict(self._server_list)
        if sl.get("auto_sync"):
            sl["auto_sync"] = False
            await self.config.write(
                f"peer {by}",
                "automatic synchronization turned off by the other server",
                [Op("server-list", SINGLETON_NAME, "put", sl)],
                gated=False,
            )
        self.events.record("sync", f"{by} turned automatic synchronization off", level="warning")
        await self._forget_cluster()
        await self._refresh()

    # ------------------------------------------------------------------ manual synchronization

    async def manual(self, source: str, target: str, dry_run: bool, peer_auth: Any, author: str) -> dict[str, Any]:
        """Copy the whole configuration from `source` to this server (`target`), auto-sync off only."""
        if self._server_list.get("auto_sync"):
            raise Conflict(
                "automatic synchronization is on: the servers already copy every change; "
                "manual synchronization is only for servers without it"
            )
        identity = self.store.require_identity()
        if target.lower() != identity.name.lower():
            raise Conflict(
                f"run the manual synchronization on the server that receives the configuration "
                f"('{target}'); this is '{identity.name}'"
            )
        entry = next((e for e in pairing.entries(self._server_list) if e["name"].lower() == source.lower()), None)
        if entry is None:
            raise Invalid(f"'{source}' is not on the server list; add it (with its address) first")
        if not isinstance(peer_auth, dict) or "username" not in peer_auth or "password" not in peer_auth:
            raise Invalid('give peer_auth {"username", "password"} of an admin account on ' + source)
        objects = await manual.fetch(entry["address"], entry["port"], peer_auth)
        if dry_run:
            return {"dry_run": True, "diff": manual.diff(objects, await manual.local_objects(self.config))}
        result = await manual.copy_here(self.store, self.config, self.settings, objects, author, source)
        self.events.record(
            "sync",
            f"{author} copied the configuration from {source} "
            f"({result['changed_objects']} objects, backup {result['backup']} first)",
        )
        return {"dry_run": False, **result}

    # ------------------------------------------------------------------ discover

    async def discover(self, name: str, port: int) -> dict[str, Any]:
        host = name.strip()
        if not host or len(host) > 253:
            raise Invalid("give the server's name (or IP address) to discover")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise NotFound(f"'{host}' cannot be resolved ({exc})") from None
        address = sorted({str(info[4][0]) for info in infos}, key=lambda a: (":" in a, a))[0]
        found = None
        url_host = f"[{address}]" if ":" in address else address
        try:
            async with httpx2.AsyncClient(timeout=httpx2.Timeout(3.0, connect=2.0)) as client:
                response = await client.get(f"http://{url_host}:{port}/healthz")
            if response.status_code == 200:
                data = response.json()
                found = {"node_id": data.get("node_id"), "version": data.get("version"), "name": data.get("name")}
        except (httpx2.HTTPError, ValueError):
            found = None
        return {"name": host, "address": address, "port": port, "thinsync": found}


def _members(sl: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {(e["name"].lower(), e["address"], e["port"]) for e in pairing.entries(sl)}
