"""Shared fixtures: a fresh bus per test, removed afterwards, and a check that the
session leaves /dev/shm as it found it."""
import multiprocessing
import os
import uuid

import pytest

import shmbus
from _procs import Procs

SHM = "/dev/shm"


SESSION = f"test-{os.getpid()}-"  # every bus this session makes starts so


def _shmbus_entries():
    """This session's segments (other sessions may run beside it)."""
    try:
        return {n for n in os.listdir(SHM) if n.startswith("shmbus:" + SESSION)}
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def shm_left_as_found():
    before = _shmbus_entries()
    yield
    left = _shmbus_entries() - before
    for name in left:  # do not let one leak poison later runs
        try:
            os.unlink(os.path.join(SHM, name))
        except OSError:
            pass
    assert not left, f"the test session left segments in /dev/shm: {sorted(left)}"


@pytest.fixture
def bus_name():
    return f"{SESSION}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bus(bus_name):
    b = shmbus.Bus(bus_name)
    try:
        yield b
    finally:
        b.unlink()
        b.close()


@pytest.fixture
def remote(bus_name):
    """A second bus, standing for another host (the bridge tests)."""
    b = shmbus.Bus(bus_name + "-remote")
    try:
        yield b
    finally:
        b.unlink()
        b.close()


@pytest.fixture(scope="session")
def spawn():
    """The spawn multiprocessing context: children start fresh interpreters."""
    return multiprocessing.get_context("spawn")


@pytest.fixture
def procs(spawn, bus):  # after `bus`: the children are gone before the bus is unlinked
    ps = Procs(spawn)
    try:
        yield ps
    finally:
        ps.close()
