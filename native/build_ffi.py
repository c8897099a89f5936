"""cffi build of the C core (API mode).  The cdef is shmbus.h itself, minus
preprocessor lines, so the interface is declared once."""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["shmbus_segment.c", "shmbus_ring.c", "shmbus_producer.c", "shmbus_consumer.c", "shmbus_group.c",
           "shmbus_pending.c", "shmbus_recover.c", "shmbus_checksum.c", "shmbus_dedup.c",
           "shmbus_spill.c", "shmbus_sweep.c", "shmbus_snapshot.c",
           "shmbus_wait.c", "shmbus_liveness.c", "shmbus_fault.c"]


def _cdef() -> str:
    with open(os.path.join(HERE, "shmbus.h")) as f:
        return "\n".join(line for line in f if not line.lstrip().startswith("#"))


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "shmbus._native",
    '#include "shmbus.h"\n#include "shmbus_layout.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, s)) for s in SOURCES],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-mcx16", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
