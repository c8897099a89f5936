"""The physical floors a benchmark reports beside its figures: the C core with no
Python, a futex round trip with no ring, one call from Python into C."""
import os
import subprocess
import tempfile
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join(HERE, "..", "native")


def _run_c(program: str, with_core: bool) -> str:
    exe = os.path.join(tempfile.mkdtemp(), "floor")
    srcs = [os.path.join(NATIVE, f) for f in sorted(os.listdir(NATIVE)) if f.endswith(".c")]
    cmd = ["gcc", "-O2", "-mcx16", "-I", NATIVE, os.path.join(HERE, program), "-o", exe]
    subprocess.run(cmd + (srcs if with_core else []), check=True)
    return subprocess.run([exe], check=True, capture_output=True, text=True).stdout.strip()


def c_ring() -> str:
    """send + poll of 64 B through shmbus's ring, in C, one thread."""
    return _run_c("c_ring_floor.c", with_core=True)


def futex_round_trip() -> str:
    return _run_c("c_futex_floor.c", with_core=False)


def cffi_call_ns() -> float:
    """One call from Python into a C function of the core that does almost nothing."""
    from shmbus._native import lib
    f = lib.shmbus_bus_size
    n = 200_000
    return min(timeit.repeat(f, number=n, repeat=5)) / n * 1e9


def report() -> list:
    return [
        ("C core alone", c_ring()),
        ("futex alone", futex_round_trip()),
        ("one Python -> C call (cffi)", f"{cffi_call_ns():.0f} ns"),
    ]
