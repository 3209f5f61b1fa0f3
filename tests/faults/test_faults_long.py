"""Long random fault schedules (`make faults`): per seed, about half a minute of kills, partitions,
one-way loss, flapping, blackholes and latency with writes on both servers, then the usual checks —
every acknowledged write on both, identical objects, equal digests, the same conflicts inbox.

A failing seed prints its schedule; rerun it alone with `-k 'seed7'`."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable

import pytest

from tests.helpers.process import ServerFactory, ServerProcess
from tests.helpers.syncing import Proxied, conflicts, finish, loads_on_both, proxied_pair

pytestmark = [pytest.mark.process, pytest.mark.faults, pytest.mark.timeout(180)]

SCHEDULE_S = 25.0


def restart(server: ServerProcess, rng: random.Random) -> None:
    server.kill()
    time.sleep(rng.uniform(0.1, 1.0))
    server.start()


def fault_steps(net: Proxied, rng: random.Random) -> dict[str, Callable[[], None]]:
    """Each step injects one fault, holds it for a while, and leaves the network healed."""

    def hold() -> None:
        time.sleep(rng.uniform(0.3, 2.5))
        net.heal()

    def partition() -> None:
        net.partition()
        hold()

    def one_way() -> None:
        rng.choice(net.proxies).drop_to_client = True
        hold()

    def flap() -> None:
        until = time.monotonic() + rng.uniform(1.0, 3.0)
        while time.monotonic() < until:
            rng.choice(net.proxies).cut()
            time.sleep(rng.uniform(0.1, 0.5))

    def blackhole() -> None:
        for proxy in net.proxies:
            proxy.blackhole()
        time.sleep(rng.uniform(1.0, 4.0))
        net.heal()

    def latency() -> None:
        for proxy in net.proxies:
            proxy.delay_s = rng.uniform(0.01, 0.1)
        hold()

    def same_object() -> None:
        # Concurrent edits of one object on both sides (conflicts are allowed; divergence is not).
        for server in (net.a, net.b):
            field = rng.choice(["address", "description"])
            value = f"10.9.9.{rng.randint(1, 250)}" if field == "address" else f"seed note {rng.random():.6f}"
            with contextlib.suppress(Exception):  # the server may be restarting: the edit is simply not made
                server.api("PATCH", "/api/v1/display-servers/shared", json={field: value}, timeout=5)

    return {
        "kill-a": lambda: restart(net.a, rng),
        "kill-b": lambda: restart(net.b, rng),
        "partition": partition,
        "one-way": one_way,
        "flap": flap,
        "blackhole": blackhole,
        "latency": latency,
        "same-object": same_object,
        "quiet": lambda: time.sleep(rng.uniform(0.2, 1.0)),
    }


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(20)])
def test_random_fault_schedule(servers: ServerFactory, seed: int) -> None:
    rng = random.Random(seed)
    with proxied_pair(servers) as net:
        created = net.a.api("PUT", "/api/v1/display-servers/shared", json={"address": "10.9.9.1"})
        assert created.status_code == 201, created.text
        steps = fault_steps(net, rng)
        loads = loads_on_both(net, rng.randint(150, 300), pause_s=rng.uniform(0.01, 0.05))
        schedule: list[str] = []
        deadline = time.monotonic() + SCHEDULE_S
        while time.monotonic() < deadline:
            name = rng.choice(sorted(steps))
            schedule.append(name)
            print(f"seed {seed} step {len(schedule)}: {name}", flush=True)
            steps[name]()
        for load in loads:
            load.stop()  # bounded: what was not written yet is simply not promised
        print(f"seed {seed} schedule: {schedule}")
        finish(net, *loads)
        assert conflicts(net.a) == conflicts(net.b)
