"""Who this process is, as the bus records it for display and as a second check."""
import os

import psutil


def process_start_time() -> int:
    """This process's start time in clock ticks since boot, as the kernel reports it."""
    try:
        with open(f"/proc/{os.getpid()}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return int(psutil.Process().create_time() * 100)
