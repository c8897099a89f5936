"""multiprocessing.Queue, bounded by the depth: one queue, or one per subscriber
for fan-out (the sender puts to each).  A batch is one put of a list; a columnar
batch one put of the 2-D array."""
import functools
import multiprocessing
from typing import Any, List, Optional

NAME = "multiprocessing.Queue"
DIST = None
RATE_HINT = 100_000


def unsupported(w) -> Optional[str]:
    return None


def open(w) -> List[Any]:
    ctx = multiprocessing.get_context("spawn")
    per_put = w.batch if w.kind in ("batch", "columnar") else 1
    maxsize = max(1, w.depth // per_put)
    queues = w.consumers if w.pattern == "each" else 1
    return [ctx.Queue(maxsize=maxsize) for _ in range(queues)]


def close(channel: List[Any]) -> None:
    for q in channel:
        q.close()


class Sender:
    def __init__(self, queues: List[Any], w):
        self.queues = queues
        puts = [q.put for q in queues]
        if w.kind in ("numpy", "columnar"):  # the loop reuses its array; put pickles later
            self.send = self.send_rows = self._put_copy
        elif len(puts) == 1:
            self.send = self.send_many = puts[0]
        else:
            self.send = self.send_many = functools.partial(_put_each, puts)

    def _put_copy(self, a) -> None:
        a = a.copy()
        for q in self.queues:
            q.put(a)

    def close(self) -> None:
        for q in self.queues:
            q.close()
            q.join_thread()  # the feeder thread has written everything


def _put_each(puts, obj) -> None:
    for put in puts:
        put(obj)


class Receiver:
    def __init__(self, q: Any, w):
        self.q = q
        self.recv = functools.partial(q.get, timeout=w.timeout)  # raises queue.Empty

    def recv_many(self, max_messages: int) -> Any:
        return self.recv()  # the list one put sent

    recv_rows = recv_many  # the 2-D array one put sent

    def close(self) -> None:
        self.q.cancel_join_thread()


def sender(channel: List[Any], w, index: int) -> Sender:
    return Sender(channel, w)


def receiver(channel: List[Any], w, index: int) -> Receiver:
    return Receiver(channel[index if len(channel) > 1 else 0], w)
