"""The peer registry: every adapter module in this folder (the contract is in
benchmarks/README.md), in a fixed order, chosen by name, loaded by name or path.

A peer is named on the command line by its module name, its ``NAME``, its
``DIST`` or the part of ``NAME`` before the first dot, case-insensitively:
``multiprocessing`` picks both ``multiprocessing.Queue`` and ``multiprocessing.Pipe``.
"""
import importlib
import importlib.util
import os
import pkgutil
from types import ModuleType, SimpleNamespace
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
# the order of tables and plots; modules not listed follow in alphabetical order
ORDER = ["shmbus_bus", "mp_queue", "mp_pipe", "fastfifo", "zeromq", "posixmq", "iceoryx"]
BASELINE = "shmbus_bus"


def names() -> List[str]:
    """Every adapter module in this folder, in table order."""
    found = [m.name for m in pkgutil.iter_modules([HERE]) if not m.name.startswith("_")]
    return [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)


def load(ref: str) -> ModuleType:
    """The adapter ``ref``: a module of this folder, or a path to a ``.py`` file (for
    tests).  A module that fails to import comes back as a stub whose
    ``unsupported`` says why, so that one broken adapter skips instead of failing."""
    try:
        if ref.endswith(".py"):
            spec = importlib.util.spec_from_file_location(
                "peer_" + os.path.basename(ref)[:-3], os.path.abspath(ref))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(f"{__name__}.{ref}")
    except Exception as e:  # noqa: BLE001 - reported as the reason it is skipped
        reason = f"adapter failed to import: {type(e).__name__}: {e}"
        return SimpleNamespace(NAME=ref, DIST=None, REF=ref, unsupported=lambda w: reason)
    mod.REF = ref  # how a child process loads it again
    return mod


def select(tokens: List[str]) -> List[str]:
    """The module names the tokens pick, in table order (the baseline always
    first); raises ValueError naming a token that picks nothing."""
    mods = {n: load(n) for n in names()}
    chosen = {BASELINE}
    for tok in tokens:
        t = tok.strip().lower()
        hits = [n for n, m in mods.items() if t in _aliases(n, m)]
        if not hits:
            raise ValueError(f"no peer called {tok!r}; peers: " + ", ".join(
                getattr(m, "NAME", n) for n, m in mods.items()))
        chosen.update(hits)
    return [n for n in mods if n in chosen]


def _aliases(name: str, mod: ModuleType) -> set:
    shown = str(getattr(mod, "NAME", name)).lower()
    dist = getattr(mod, "DIST", None)
    return {name.lower(), shown, shown.split(".")[0]} | ({dist.lower()} if dist else set())
