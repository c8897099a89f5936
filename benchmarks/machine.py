"""A description of the machine a benchmark ran on, for its report."""
import os
import platform
from importlib import metadata
from typing import Dict, Iterable


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(packages: Iterable[str] = ("shmbus", "cffi", "numpy")) -> Dict[str, str]:
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions(packages),
    }


def versions(dists: Iterable[str]) -> Dict[str, str]:
    """The installed version of each distribution ("not installed" when missing)."""
    out = {}
    for name in dists:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
