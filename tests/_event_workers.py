"""Children for test_events: tellers appending to shared accounts."""
import time

import shmbus


def teller(bus_name, path, store, accounts, n, amount, think=0.0):
    """n deposits of ``amount`` spread over ``accounts``, each appended at the
    version read just before (retried on a conflict); returns the conflicts met."""
    conflicts = 0
    with shmbus.Bus(bus_name, path=path) as bus, shmbus.EventStore(bus, store) as s:
        for i in range(n):
            account = accounts[i % len(accounts)]
            while True:
                v = s.version(account)
                time.sleep(think)
                try:
                    s.append(account, [("deposit", amount)], expected_version=v)
                    break
                except shmbus.VersionConflictError:
                    conflicts += 1
    return conflicts
