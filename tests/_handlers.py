"""Handlers for the worker tests, importable by spawned members.  A message's
value is ``PATH|MODE``: each delivery appends ``pid delivery_count monotonic`` to
PATH, then MODE says what happens."""
import os
import time


def record(msg):
    path, mode = msg.value.decode().split("|")
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {msg.delivery_count} {time.monotonic()}\n")
    if mode == "flaky" and msg.delivery_count < 3:
        raise ConnectionError("try again")
    if mode == "bad":
        raise ValueError("cannot parse")
    if mode == "hang" and msg.delivery_count == 1:
        time.sleep(60)


def lines(path):
    """The deliveries recorded in PATH: [(pid, delivery_count, time)]."""
    try:
        with open(path) as f:
            return [(int(a), int(b), float(c)) for a, b, c in (ln.split() for ln in f if ln.strip())]
    except FileNotFoundError:
        return []


def wait_for(path, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = lines(path)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    return lines(path)
