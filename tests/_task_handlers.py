"""Task handlers for test_tasks, importable by spawned workers."""
import os
import time

import shmbus


def add(a, b):
    return a + b


def steps(n, pause=0.05):
    for i in range(n):
        time.sleep(pause)
        shmbus.report_progress((i + 1) / n, f"step {i + 1}")
    return n


def bad_input(text):
    raise ValueError(f"cannot parse {text!r}")


def flaky(path):
    """Fails on its first run (a file remembers it), then succeeds."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise ConnectionError("the service did not answer")
    return "second time lucky"


def first_hangs(path):
    """The first attempt writes its pid to ``path`` and hangs; a later one returns."""
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
    return os.getpid()


def unpicklable_result():
    return lambda: None
