"""iceoryx2 publish-subscribe, copy in and copy out.

Each run gets its own file prefix and root directory (an iceoryx2 config), so that
``close`` can remove every file the run made in /dev/shm and under the root, also
those that crashed children left behind.

A subscriber connects to a publisher only when it looks for samples after the
publisher exists; until then ``send`` reaches nobody and the sample is gone.  So a
sender's first ``send`` first sends empty samples until one of them reaches every
consumer, and receivers skip empty samples.
"""
import ctypes
import glob
import os
import shutil
import time
import uuid
from typing import Any, Dict, Optional

NAME = "iceoryx2"
DIST = "iceoryx2"

_SHM = "/dev/shm"
_made: Dict[str, Any] = {}


def unsupported(w) -> Optional[str]:
    try:
        import iceoryx2  # noqa: F401
    except ImportError:
        return "not installed (pip install '.[bench]')"
    if w.kind in ("batch", "columnar"):
        return "no batch API: pub/sub moves one sample per loan and send"
    if w.pattern == "share" and w.consumers > 1:
        return "pub/sub has no competing consumers: every subscriber gets every sample"
    return None


def _config(channel):
    import iceoryx2 as iox
    config = iox.config.default()
    g = config.global_cfg
    g.prefix = iox.FileName.new(channel["prefix"])
    g.root_path = iox.Path.new(channel["root"])
    return config


def _node(channel):
    import iceoryx2 as iox
    return iox.NodeBuilder.new().config(_config(channel)).create(iox.ServiceType.Ipc)


def _pubsub(node, channel, create: bool):
    import iceoryx2 as iox
    builder = (node.service_builder(iox.ServiceName.new(channel["service"]))
               .publish_subscribe(iox.Slice[ctypes.c_uint8])
               .max_publishers(channel["producers"])
               .max_subscribers(channel["consumers"])
               .max_nodes(channel["nodes"])
               .subscriber_max_buffer_size(channel["depth"])
               .subscriber_max_borrowed_samples(1)
               .history_size(0)
               .enable_safe_overflow(False))
    return builder.create() if create else builder.open()


def _event(node, channel, create: bool):
    import iceoryx2 as iox
    builder = (node.service_builder(iox.ServiceName.new(channel["service"] + "/ready"))
               .event()
               .max_notifiers(channel["producers"])
               .max_listeners(channel["consumers"])
               .max_nodes(channel["nodes"]))
    return builder.create() if create else builder.open()


def open(w) -> Dict[str, Any]:
    token = uuid.uuid4().hex[:12]
    channel = {
        "prefix": f"sbiox{token}_",
        "root": f"/tmp/shmbus-iox-{token}/",
        "service": f"shmbus-bench/{token}",
        "producers": w.producers,
        "consumers": w.consumers,
        "nodes": max(20, w.producers + w.consumers + 1),
        "depth": w.depth,
        "notify": w.kind == "ping" and not w.spin,
    }
    try:
        node = _node(channel)
        services = [_pubsub(node, channel, create=True)]
        if channel["notify"]:
            services.append(_event(node, channel, create=True))
    except Exception:
        close(channel)
        raise
    # The parent holds the services for the whole run, so that they outlive a
    # publisher that exits before its subscribers have drained it.
    _made[token] = (node, services)
    return channel


def close(channel) -> None:
    token = channel["prefix"][len("sbiox"):-1]
    held = _made.pop(token, None)
    if held is not None:
        node, services = held
        services.clear()
        del node, held
    for path in glob.glob(os.path.join(_SHM, channel["prefix"] + "*")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    shutil.rmtree(channel["root"], ignore_errors=True)


class Sender:
    def __init__(self, channel, w, index: int):
        import iceoryx2 as iox
        self._node = _node(channel)
        self._service = _pubsub(self._node, channel, create=False)
        self._publisher = (self._service.publisher_builder()
                           .initial_max_slice_len(w.size)
                           .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
                           .create())
        self._loan = self._publisher.loan_slice_uninit
        self._consumers = w.consumers
        self._timeout = w.timeout
        self._linked = False
        self._notifier = None
        self._notify = None
        if channel["notify"]:
            self._events = _event(self._node, channel, create=False)
            self._notifier = self._events.notifier_builder().create()
            self._notify = self._notifier.notify
        self.send = self._send_array if w.kind == "numpy" else self._send_bytes
        if w.kind != "ping":
            # A ping process makes its sender before its receiver: waiting here
            # for the other side's subscriber would wait for each other.
            self._wait_for_subscribers()

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self._timeout
        while self._service.dynamic_config.number_of_subscribers < self._consumers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"iceoryx2: fewer than {self._consumers} subscribers "
                                   f"after {self._timeout} s")
            time.sleep(0.001)

    def _link(self) -> None:
        """Sends empty samples until one reaches every consumer."""
        deadline = time.monotonic() + self._timeout
        pause = 0.0002
        while True:
            reached = self._loan(0).assume_init().send()
            if self._notify is not None:
                self._notify()
            if reached >= self._consumers:
                self._linked = True
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"iceoryx2: a sample reached {reached} of "
                                   f"{self._consumers} subscribers after {self._timeout} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _send_bytes(self, buf) -> None:
        if not self._linked:
            self._link()
        n = len(buf)
        sample = self._loan(n)
        ctypes.memmove(sample.payload_ptr, buf, n)
        sample.assume_init().send()
        if self._notify is not None:
            self._notify()

    def _send_array(self, buf) -> None:
        if not self._linked:
            self._link()
        view = memoryview(buf)
        n = view.nbytes
        sample = self._loan(n)
        ctypes.memmove(sample.payload_ptr, buf.ctypes.data if hasattr(buf, "ctypes") else bytes(view), n)
        sample.assume_init().send()
        if self._notify is not None:
            self._notify()

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.delete()
        self._publisher.delete()


class Receiver:
    def __init__(self, channel, w, index: int):
        self._node = _node(channel)
        self._listener = None
        if channel["notify"]:
            import iceoryx2 as iox
            self._events = _event(self._node, channel, create=False)
            self._listener = self._events.listener_builder().create()
            self._wait_step = iox.Duration.from_secs_f64(0.05)
        self._service = _pubsub(self._node, channel, create=False)
        self._subscriber = self._service.subscriber_builder().buffer_size(channel["depth"]).create()
        self._receive = self._subscriber.receive
        self._timeout = w.timeout
        if w.kind == "numpy":
            import numpy
            frombuffer, uint8 = numpy.frombuffer, numpy.uint8
            self._wrap = lambda data: frombuffer(data, uint8)
        else:
            self._wrap = None

    def recv(self):
        receive = self._receive
        sample = receive()
        while True:
            if sample is None:
                sample = self._wait()
                if sample is None:
                    return None
            n = sample.header.number_of_elements
            if n:
                data = ctypes.string_at(sample.payload_ptr, n)
                sample.delete()
                return data if self._wrap is None else self._wrap(data)
            sample.delete()
            sample = receive()

    def _wait(self):
        receive = self._receive
        clock = time.monotonic
        deadline = clock() + self._timeout
        listener = self._listener
        while clock() < deadline:
            if listener is not None:
                listener.timed_wait(self._wait_step)
            sample = receive()
            if sample is not None:
                return sample
            os.sched_yield()
        return None

    def close(self) -> None:
        if self._listener is not None:
            self._listener.delete()
        self._subscriber.delete()


def sender(channel, w, index: int) -> Sender:
    return Sender(channel, w, index)


def receiver(channel, w, index: int) -> Receiver:
    return Receiver(channel, w, index)
