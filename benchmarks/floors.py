"""The physical floors a benchmark reports beside its figures: memcpy bandwidth, the C
core alone over shmbus's own ring across two processes, one call from Python into C.

``measure(quick)`` returns the figures as a dict, ``describe(d)`` as (label, text)
rows; ``report()`` measures and describes in one go."""
import atexit
import os
import shutil
import subprocess
import tempfile
import timeit
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join(HERE, "..", "native")
KiB, MiB = 1024, 1024 * 1024

_built: Dict[str, str] = {}


@atexit.register
def _remove_built() -> None:
    for exe in _built.values():
        shutil.rmtree(os.path.dirname(exe), ignore_errors=True)


def _build(program: str, with_core: bool) -> str:
    if program in _built and os.path.exists(_built[program]):
        return _built[program]
    where = tempfile.mkdtemp(prefix="shmbus-floor-")
    exe = os.path.join(where, os.path.splitext(program)[0])
    srcs = [os.path.join(NATIVE, f) for f in sorted(os.listdir(NATIVE)) if f.endswith(".c")]
    cmd = ["gcc", "-O2", "-mcx16", "-I", NATIVE, os.path.join(HERE, program), "-o", exe]
    try:
        subprocess.run(cmd + (srcs if with_core else []), check=True, timeout=120)
    except BaseException:
        shutil.rmtree(where, ignore_errors=True)
        raise
    _built[program] = exe
    return exe


def _ring(mode: str, size: int, count: int) -> Dict[str, float]:
    out = subprocess.run([_build("c_ring_floor.c", True), mode, str(size), str(count)],
                         check=True, capture_output=True, text=True, timeout=120).stdout.split()
    ns, msgs, nbytes, bad = (float(x) for x in out)
    if bad:
        raise RuntimeError(f"c_ring_floor {mode} {size}: {bad:.0f} bad messages")
    return {"ns": ns, "msgs_s": msgs, "gb_s": nbytes / 1e9}


def c_ring() -> str:
    """send + poll of 64 B through shmbus's ring, in C, one thread."""
    r = _ring("one", 64, 2_000_000)
    return f"{r['ns']:.1f} ns per message, {r['msgs_s'] / 1e6:.2f} M msgs/s"


def futex_round_trip() -> str:
    exe = _build("c_futex_floor.c", False)
    return subprocess.run([exe], check=True, capture_output=True, text=True,
                          timeout=120).stdout.strip()


def memcpy_gb_s(size: int, quick: bool) -> float:
    """np.copyto between two preallocated buffers, best of a few, GB/s."""
    import numpy as np
    src = np.ones(size, np.uint8)
    dst = np.zeros(size, np.uint8)
    number = max(1, (256 if quick else 2048) * MiB // size)
    best = min(timeit.repeat(lambda: np.copyto(dst, src), number=number, repeat=3 if quick else 5))
    return size * number / best / 1e9


def _call_ns(f, n: int, repeat: int) -> float:
    return min(timeit.repeat(f, number=n, repeat=repeat)) / n * 1e9


def python_to_c_ns(quick: bool) -> Tuple[float, float]:
    """One call from Python into a C function of the core that does almost nothing:
    without arguments, and with a 64 B ``bytes`` argument (a CRC of none of it)."""
    from shmbus._native import lib
    n, repeat = (100_000, 3) if quick else (500_000, 5)
    none = _call_ns(lib.shmbus_bus_size, n, repeat)
    crc, payload = lib.shmbus_crc32c, bytes(64)
    with_bytes = _call_ns(lambda: crc(0, payload, 0), n, repeat)
    empty = _call_ns(lambda: None, n, repeat)
    return none, with_bytes - empty


def measure(quick: bool) -> Dict[str, float]:
    d: Dict[str, float] = {}
    d["memcpy_1m_gb_s"] = memcpy_gb_s(MiB, quick)
    d["memcpy_gb_s"] = memcpy_gb_s(64 * MiB, quick)
    small = _ring("two", 64, 1_000_000 if quick else 5_000_000)
    d["c_core_64b_msgs_s"] = small["msgs_s"]
    d["c_core_64b_ns"] = small["ns"]
    d["c_core_64k_gb_s"] = _ring("two", 64 * KiB, 10_000 if quick else 50_000)["gb_s"]
    d["c_core_one_thread_ns"] = _ring("one", 64, 1_000_000 if quick else 5_000_000)["ns"]
    d["python_to_c_call_ns"], d["python_to_c_call_64b_ns"] = python_to_c_ns(quick)
    return d


def describe(d: Dict[str, float]) -> List[Tuple[str, str]]:
    rows = []
    if "memcpy_gb_s" in d:
        text = f"{d['memcpy_gb_s']:.1f} GB/s at 64 MiB"
        if "memcpy_1m_gb_s" in d:
            text += f", {d['memcpy_1m_gb_s']:.1f} GB/s at 1 MiB"
        rows.append(("memcpy (numpy copyto, one thread)", text))
    if "c_core_64b_msgs_s" in d:
        rows.append(("C core, two processes, 64 B",
                     f"{d['c_core_64b_msgs_s'] / 1e6:.2f} M msgs/s (copy in, copy out)"))
    if "c_core_64k_gb_s" in d:
        rows.append(("C core, two processes, 64 KiB", f"{d['c_core_64k_gb_s']:.1f} GB/s"))
    if "c_core_one_thread_ns" in d:
        rows.append(("C core, one thread, send + poll 64 B",
                     f"{d['c_core_one_thread_ns']:.1f} ns per message"))
    if "python_to_c_call_ns" in d:
        text = f"{d['python_to_c_call_ns']:.0f} ns"
        if "python_to_c_call_64b_ns" in d:
            text += f"; with a 64 B bytes argument {d['python_to_c_call_64b_ns']:.0f} ns"
        rows.append(("one Python -> C call (cffi)", text))
    return rows


def report(quick: bool = False) -> List[Tuple[str, str]]:
    rows = describe(measure(quick))
    rows.append(("futex alone", futex_round_trip()))
    return rows


if __name__ == "__main__":
    import sys
    for label, text in report(quick="--quick" in sys.argv):
        print(f"{label:40} {text}")
