"""Real servers for the bridge tests: redis-server on loopback, with a data
directory of its own, started and stopped by the tests."""
import os
import shutil
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server; ``stop()`` and ``start()`` again on the same port."""

    def __init__(self, directory: str):
        self.exe = shutil.which("redis-server")
        self.directory = directory
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, wait: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
             "--save", "", "--appendonly", "yes", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {wait} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class NatsServer:
    """One nats-server with JetStream; ``stop()`` and ``start()`` again on the same port."""

    def __init__(self, directory: str):
        self.exe = shutil.which("nats-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        self.directory = directory
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, wait: float = 10.0) -> None:
        self.proc = subprocess.Popen([self.exe, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                      "-sd", self.directory],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    if c.recv(4) == b"INFO":
                        time.sleep(0.2)  # JetStream is ready a moment after the listener
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not answer on port {self.port} within {wait} s")

    stop = RedisServer.stop
