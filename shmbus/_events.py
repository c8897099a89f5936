"""Event sourcing and CQRS on a replayable topic.

:class:`EventStore` keeps the events of aggregates on ``NAME.events``, a
``retention="log"`` topic (on a disk bus it survives restarts): each append is
one record (the aggregate id as key, its first version, the events), so an
append is all or nothing.  Versions count an aggregate's events from 1.
Optimistic concurrency: an append names the version it expects the aggregate
to be at; the store catches up with the log and refuses a stale expectation
(:class:`VersionConflictError`), and two processes racing to append the same
version send it with the same ``msg_id`` (``AGGREGATE:VERSION``), so the bus
publishes one and tells the other (``Producer.send_once``).

Snapshots (on ``NAME.snapshots``) bound replay: :meth:`EventStore.rebuild`
starts from the latest snapshot and folds only the events after it.  The log
keeps what its ring holds (``capacity`` bytes per partition): size it for the
events since the oldest snapshot any aggregate needs.

:class:`Projection` is a read model: a consumer group on the events topic
folding every event into a state; a new group started from the beginning
rebuilds it from the log."""
import pickle
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ._errors import ClosedError, ShmbusError, TopicExistsError
from ._names import check_name

DEFAULT_CAPACITY = 256 * 2**20

Apply = Callable[[Any, Any], Any]  # (state, event) -> new state


class VersionConflictError(ShmbusError):
    """An append expected an aggregate at a version it is no longer at."""

    def __init__(self, aggregate_id: str, expected: int, actual: int):
        super().__init__(f"aggregate {aggregate_id!r} is at version {actual}, "
                         f"not {expected} as the append expected")
        self.aggregate_id, self.expected, self.actual = aggregate_id, expected, actual


class EventsLostError(ShmbusError):
    """The log no longer holds an aggregate's early events, and no snapshot
    covers them (the ring was too small for them)."""


def _record(aggregate_id: str, first: int, events: List[Any]) -> bytes:
    return pickle.dumps((aggregate_id, first, events), protocol=5)


class EventStore:
    """Events per aggregate on a log topic of ``bus``; see the module's text."""

    def __init__(self, bus: Any, name: str, *, partitions: Optional[int] = None,
                 capacity: Optional[int] = None):
        """Opens the store, making its topics if they do not exist (then with
        ``partitions`` (1) and ``capacity`` (256 MiB a partition); given for a
        store that exists, they must match it)."""
        self.name = check_name(name, "event store")
        self.topic, self.snapshot_topic = f"{self.name}.events", f"{self.name}.snapshots"
        given = {k: v for k, v in dict(partitions=partitions, capacity=capacity).items()
                 if v is not None}
        try:
            bus.create_topic(self.topic, retention="log",
                             **dict(dict(partitions=1, capacity=DEFAULT_CAPACITY), **given))
        except TopicExistsError:
            bus.create_topic(self.topic, retention="log", exist_ok=True, **given)
        bus.create_topic(self.snapshot_topic, retention="log", exist_ok=True)
        self.bus = bus
        self._producer = bus.producer(self.topic)
        self._snapshots_out = bus.producer(self.snapshot_topic)
        self._reader = bus.consumer(self.topic, start="earliest", tethered=False)
        self._snapshot_reader = bus.consumer(self.snapshot_topic, start="earliest", tethered=False)
        self._versions: Dict[str, int] = {}
        self._events: Dict[str, List[Tuple[int, Any]]] = {}  # id -> [(version, event)] kept
        self._snapshots: Dict[str, Tuple[int, Any]] = {}      # id -> (version, state)
        self._catch_up()

    # -- writing -------------------------------------------------------------------

    def append(self, aggregate_id: str, events: Sequence[Any], expected_version: int) -> int:
        """Append ``events`` to the aggregate, which must be at
        ``expected_version`` (0: a new aggregate); returns its new version.
        VersionConflictError when it is not, or another process appended that
        version first; nothing is appended then."""
        if not isinstance(aggregate_id, str) or not aggregate_id:
            raise TypeError("an aggregate id is a non-empty str")
        if isinstance(expected_version, bool) or not isinstance(expected_version, int) \
                or expected_version < 0:
            raise TypeError("expected_version is an int >= 0")
        events = list(events)
        if not events:
            raise ValueError("append needs at least one event")
        self._catch_up()
        actual = self._versions.get(aggregate_id, 0)
        if actual != expected_version:
            raise VersionConflictError(aggregate_id, expected_version, actual)
        first = expected_version + 1
        _, published = self._producer.send_once(_record(aggregate_id, first, events),
                                                f"{aggregate_id}:{first}", key=aggregate_id)
        self._catch_up()
        if not published:  # another process appended this version first
            raise VersionConflictError(aggregate_id, expected_version,
                                       self._versions.get(aggregate_id, first))
        return expected_version + len(events)

    def save_snapshot(self, aggregate_id: str, version: int, state: Any) -> None:
        """Record the aggregate's ``state`` after its first ``version`` events."""
        if not 0 < version <= self.version(aggregate_id):
            raise ValueError(f"aggregate {aggregate_id!r} has no version {version}")
        self._snapshots_out.send(pickle.dumps((aggregate_id, version, state), protocol=5),
                                 key=aggregate_id)
        self._catch_up()

    # -- reading -------------------------------------------------------------------

    def version(self, aggregate_id: str) -> int:
        """The aggregate's version now (0: no events)."""
        self._catch_up()
        return self._versions.get(aggregate_id, 0)

    def aggregates(self) -> List[str]:
        self._catch_up()
        return sorted(self._versions)

    def load(self, aggregate_id: str, after: int = 0) -> List[Any]:
        """The aggregate's events after version ``after``, in order, as replayed
        from the log."""
        self._catch_up()
        kept = self._events.get(aggregate_id, [])
        if kept and kept[0][0] > after + 1 or (not kept and self._versions.get(aggregate_id, 0) > after):
            raise EventsLostError(f"the log no longer holds the events of {aggregate_id!r} "
                                  f"after version {after}")
        return [e for v, e in kept if v > after]

    def rebuild(self, aggregate_id: str, apply: Apply, initial: Any = None,
                use_snapshot: bool = True) -> Tuple[int, Any]:
        """(version, state): the latest snapshot (unless ``use_snapshot`` is
        False) and the events after it, folded with ``apply(state, event)``."""
        self._catch_up()
        version, state = (0, initial)
        if use_snapshot and aggregate_id in self._snapshots:
            version, state = self._snapshots[aggregate_id]
        for event in self.load(aggregate_id, after=version):
            state = apply(state, event)
        return self._versions.get(aggregate_id, 0), state

    def _catch_up(self) -> None:
        """Fold what the two logs gained since the last look."""
        for m in _drain(self._snapshot_reader):
            aggregate_id, version, state = pickle.loads(m.value)
            if version >= self._snapshots.get(aggregate_id, (0, None))[0]:
                self._snapshots[aggregate_id] = (version, state)
        for m in _drain(self._reader):
            aggregate_id, first, events = pickle.loads(m.value)
            if first != self._versions.get(aggregate_id, 0) + 1 and aggregate_id in self._versions:
                continue  # a duplicate of a version already folded (cannot happen with ids kept)
            kept = self._events.setdefault(aggregate_id, [])
            kept.extend((first + i, e) for i, e in enumerate(events))
            self._versions[aggregate_id] = first + len(events) - 1

    def close(self) -> None:
        for h in (self._producer, self._snapshots_out, self._reader, self._snapshot_reader):
            h.close()

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _drain(consumer: Any) -> Iterable[Any]:
    while True:
        batch = consumer.poll_batch(1000, timeout=0)
        if not batch:
            return
        yield from batch


class Projection:
    """A read model of an event store: ``apply(state, aggregate_id, event)``
    folds every event into ``state`` (made by ``initial()``), as a member of
    the consumer group ``group`` on the store's events topic (acks by batch,
    after folding).  A new group (``start="earliest"``) rebuilds the model from
    the whole log; an existing one goes on from its committed offsets (its
    state must then be kept by ``apply`` somewhere durable, as a real read
    model's table would be)."""

    def __init__(self, bus: Any, store_name: str, group: str,
                 apply: Callable[[Any, str, Any], Any], initial: Callable[[], Any] = dict,
                 start: str = "earliest"):
        self.state = initial()
        self.apply = apply
        self.version: Dict[str, int] = {}
        self._consumer = bus.consumer(f"{store_name}.events", group=group, ack="manual",
                                      ordering="partition", start=start)

    def catch_up(self, timeout: float = 0.0) -> int:
        """Fold the events published since the last call (waiting up to
        ``timeout`` for the first); how many records were folded."""
        n = 0
        while True:
            try:
                batch = self._consumer.poll_batch(1000, timeout=timeout if n == 0 else 0)
            except ClosedError:
                return n
            if not batch:
                return n
            for m in batch:
                aggregate_id, first, events = pickle.loads(m.value)
                for e in events:
                    self.state = self.apply(self.state, aggregate_id, e)
                self.version[aggregate_id] = first + len(events) - 1
            self._consumer.ack(batch)
            n += len(batch)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "Projection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
