"""Ending a benchmark's child processes: each gets ``wait`` seconds to finish,
then SIGKILL (a child that hangs must not hang the benchmark)."""
from typing import Iterable


def reap(procs: Iterable, wait: float) -> None:
    for p in procs:
        if p.pid is None:  # never started
            continue
        p.join(wait)
        if p.is_alive():
            p.kill()
            p.join(5)
