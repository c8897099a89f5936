"""Event sourcing and CQRS with :class:`shmbus.EventStore` on a disk bus.

Accounts are aggregates whose events (deposits, withdrawals) are appended to a
log topic with optimistic concurrency: two teller processes work on the same
accounts, each appending at the version it read, and retry when the other got
there first; a withdrawal that would overdraw is refused by the aggregate's own
rule.  A read model (balances, maintained by a consumer group) follows the log; a
snapshot bounds the replay of a busy account; then the bus is closed and opened
again from disk, the accounts rebuilt from snapshot plus replay, and a new group
rebuilds the read model from the beginning.

    python -m shmbus.examples.bank
"""
import multiprocessing as mp
import os
import random
import tempfile
import time

import shmbus

ACCOUNTS = ["alice", "bob", "carol"]


def balance(state, event):
    kind, amount = event
    return (state or 0) + (amount if kind == "deposit" else -amount)


def totals(state, account, event):
    state[account] = balance(state.get(account), event)
    return state


def teller(bus_name: str, path: str, seed: int, operations: int) -> int:
    """Deposits and withdrawals at random; returns the conflicts it met."""
    rnd = random.Random(seed)
    conflicts = 0
    with shmbus.Bus(bus_name, path=path) as bus, shmbus.EventStore(bus, "bank") as store:
        for _ in range(operations):
            account = rnd.choice(ACCOUNTS)
            amount = rnd.randint(1, 50)
            while True:
                version, money = store.rebuild(account, balance, 0)
                kind = "withdraw" if money >= amount and rnd.random() < 0.4 else "deposit"
                time.sleep(rnd.random() / 1000)  # the teller thinks; the other may append meanwhile
                try:
                    store.append(account, [(kind, amount)], expected_version=version)
                    break
                except shmbus.VersionConflictError:
                    conflicts += 1  # the other teller was first: read again, decide again
    return conflicts


def main() -> None:
    with tempfile.TemporaryDirectory() as path:
        name = f"bank-{os.getpid()}"
        with shmbus.Bus(name, path=path) as bus, shmbus.EventStore(bus, "bank") as store, \
                shmbus.Projection(bus, "bank", "balances", totals) as live:
            ctx = mp.get_context("spawn")
            with ctx.Pool(2) as pool:
                conflicts = sum(pool.starmap(teller, [(name, path, s, 300) for s in (1, 2)]))
            live.catch_up(timeout=1)
            events = sum(store.version(a) for a in ACCOUNTS)
            print(f"2 tellers appended {events} events; {conflicts} appends lost a race "
                  "and were retried")
            for a in ACCOUNTS:
                version, money = store.rebuild(a, balance, 0)
                store.save_snapshot(a, version, money)
                print(f"  {a}: balance {money} at version {version} (read model: {live.state[a]})")
            before = {a: store.rebuild(a, balance, 0) for a in ACCOUNTS}
        with shmbus.Bus(name, path=path) as bus, shmbus.EventStore(bus, "bank") as store:
            after = {a: store.rebuild(a, balance, 0) for a in ACCOUNTS}
            replayed = {a: store.rebuild(a, balance, 0, use_snapshot=False) for a in ACCOUNTS}
            print("reopened from disk; snapshot + replay equals before:", after == before,
                  "; full replay too:", replayed == before)
            with shmbus.Projection(bus, "bank", "balances-v2", totals) as rebuilt:
                rebuilt.catch_up(timeout=1)
                print("read model rebuilt by a new group equals the live one:",
                      rebuilt.state == {a: m for a, (_, m) in before.items()})
            bus.unlink()


if __name__ == "__main__":
    main()
