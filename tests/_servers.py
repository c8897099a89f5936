"""Real servers for the bridge tests, on loopback, each with a data directory of
its own, started and stopped by the tests: redis-server and nats-server (with
JetStream).  ``started(RedisServer, dir)`` skips the test, saying why, when the
server is not installed or cannot start."""
import os
import shutil
import socket
import subprocess
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process; ``stop()`` and ``start()`` again on the same port."""

    NAME = ""
    SCHEME = ""

    def __init__(self, directory: str):
        self.exe = shutil.which(self.NAME, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        self.directory = directory
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"{self.SCHEME}://127.0.0.1:{self.port}"

    def command(self) -> list:
        raise NotImplementedError

    def answers(self, conn: socket.socket) -> bool:
        raise NotImplementedError

    def start(self, wait: float = 10.0) -> None:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    if self.answers(c):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.NAME} did not answer on port {self.port} within {wait} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class RedisServer(Server):
    NAME, SCHEME = "redis-server", "redis"

    def command(self) -> list:
        return [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
                "--save", "", "--appendonly", "yes", "--protected-mode", "no"]

    def answers(self, conn: socket.socket) -> bool:
        conn.sendall(b"PING\r\n")
        return conn.recv(16).startswith(b"+PONG")


class NatsServer(Server):
    NAME, SCHEME = "nats-server", "nats"

    def command(self) -> list:
        return [self.exe, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.directory]

    def answers(self, conn: socket.socket) -> bool:
        if conn.recv(4) != b"INFO":
            return False
        time.sleep(0.2)  # JetStream is ready a moment after the listener
        return True


def started(cls: type, directory: str) -> Server:
    """A running server of ``cls``, or the test skipped, saying why."""
    s = cls(directory)
    if s.exe is None:
        pytest.skip(f"{cls.NAME} is not installed (.ci/run installs Debian's)")
    try:
        s.start()
    except RuntimeError as e:
        pytest.skip(f"{cls.NAME} could not start: {e}")
    return s
