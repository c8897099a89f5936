"""shmbus: a message bus for processes on one host, over shared-memory rings."""
from ._bus import Bus
from ._columns import Columns
from ._consumer import Consumer
from ._errors import (AckError, BusFull, BusNotFoundError, ClosedError, ConfigError, ConfigMismatchError,
                      CorruptSegmentError, GroupNotFoundError, InvalidNameError,
                      MessageReleasedError, MessageTooLargeError, ShmbusError, TopicExistsError,
                      TopicNotFoundError, UnsafeSegmentError)
from ._message import Message, Offset
from ._producer import Producer
from ._queue import Queue
from ._worker import Worker
from ._dedup import Deduplicator
from ._handling import Subscription
from ._batch import Batcher
from ._events import EventsLostError, EventStore, Projection, VersionConflictError
from ._windows import WindowedStream, WindowResult, Windows
from ._tasks import TaskFailedError, TaskNotFoundError, TaskQueue, TaskStatus, report_progress
from ._retry import (ErrorClassifier, ExponentialBackoff, FixedInterval, LinearBackoff, PermanentError,
                     RateLimitError, RetryPolicy, Retrying, TransientError)

__version__ = "0.1.0"

__all__ = [
    "Bus", "Producer", "Consumer", "Message", "Offset", "Columns",
    "ShmbusError", "BusFull", "MessageTooLargeError", "InvalidNameError", "ConfigError",
    "ConfigMismatchError", "TopicNotFoundError", "TopicExistsError", "CorruptSegmentError",
    "ClosedError", "MessageReleasedError", "AckError", "GroupNotFoundError", "UnsafeSegmentError",
    "BusNotFoundError",
    "RetryPolicy", "ExponentialBackoff", "FixedInterval", "LinearBackoff", "ErrorClassifier", "Retrying",
    "TransientError", "PermanentError", "RateLimitError", "Subscription", "Worker",
    "Deduplicator", "Queue", "Batcher", "EventStore", "Projection", "VersionConflictError",
    "EventsLostError", "Windows", "WindowResult", "WindowedStream", "TaskQueue", "TaskStatus", "TaskFailedError", "TaskNotFoundError",
    "report_progress",
    "__version__",
]
