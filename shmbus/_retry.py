"""Retry policies and the error classifier: what a worker does when a handler raises.

A handler's exception is classified as *transient* (retry with backoff), *rate
limit* (retry on the rate-limit policy, or after the ``retry_after`` the error
carries) or *permanent* (to the dead letters at once).  :class:`Retrying` puts the
two together: given the exception and how many times the message was delivered,
it says when to deliver it again (the delay of a ``nack``), or that it is done
for.  Every policy has a maximum number of retries; past it the message goes to
the dead letters too.

Defaults, chosen where a user of Celery, tenacity or a RabbitMQ client would
expect them: network and timeout errors (``ConnectionError``, ``TimeoutError``,
``BrokenPipeError``, ``InterruptedError``, ``BlockingIOError``) are transient;
:class:`RateLimitError` is a rate limit; programming and data errors
(``ValueError``, ``TypeError``, ``KeyError``, ``IndexError``, ``AttributeError``,
``LookupError``, ``NotImplementedError``, ``AssertionError``, ``UnicodeError``,
``pickle.UnpicklingError``) and :class:`PermanentError` are permanent; any other
exception is transient (it is retried, within the maximum).  The most specific
class in an exception's MRO decides, so ``ConnectionRefusedError`` is transient
although it is an ``OSError``, and a subclass may be classified apart from its
base.
"""
import pickle
import random
from typing import Dict, Iterable, Optional, Tuple, Type

from ._config import integer
from ._errors import ConfigError

TRANSIENT = "transient"
RATE_LIMIT = "rate_limit"
PERMANENT = "permanent"
KINDS = (TRANSIENT, RATE_LIMIT, PERMANENT)


class TransientError(Exception):
    """Raise it from a handler to have the message retried with backoff."""


class PermanentError(Exception):
    """Raise it from a handler to send the message to the dead letters at once."""


class RateLimitError(Exception):
    """Raise it from a handler when a service said "slow down"; ``retry_after``
    (seconds), when given, is the delay of the next delivery."""

    def __init__(self, *args: object, retry_after: Optional[float] = None):
        super().__init__(*args)
        self.retry_after = retry_after


# -- policies ------------------------------------------------------------------------

def _number(value: object, name: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not value >= low or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= {low}, got {value!r}")
    return float(value)


class RetryPolicy:
    """When to try again: ``delay(retry)`` is the wait before retry number
    ``retry`` (1 for the first), ``None`` once ``max_retries`` are used up."""

    max_retries: int
    jitter: float = 0.0

    def base_delay(self, retry: int) -> float:
        raise NotImplementedError

    def delay(self, retry: int) -> Optional[float]:
        if retry > self.max_retries:
            return None
        d = self.base_delay(retry)
        if self.jitter:
            d *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, d)

    def delays(self) -> Iterable[float]:
        """Every delay in turn, jitter left out: for documentation and tests."""
        return [self.base_delay(r) for r in range(1, self.max_retries + 1)]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class ExponentialBackoff(RetryPolicy):
    """``base * factor ** (retry - 1)`` seconds, at most ``max_delay``, each spread
    by up to ``jitter`` (a fraction: 0.1 is +-10 %) so that many workers do not
    retry in step."""

    def __init__(self, base: float = 0.1, factor: float = 2.0, max_delay: float = 30.0,
                 jitter: float = 0.1, max_retries: int = 5):
        self.base = _number(base, "base")
        self.factor = _number(factor, "factor", 1.0)
        self.max_delay = _number(max_delay, "max_delay")
        self.jitter = _fraction(jitter)
        self.max_retries = integer(max_retries, "max_retries")

    def base_delay(self, retry: int) -> float:
        try:
            return min(self.max_delay, self.base * self.factor ** (retry - 1))
        except OverflowError:
            return self.max_delay


class FixedInterval(RetryPolicy):
    """The same ``interval`` seconds before every retry."""

    def __init__(self, interval: float = 1.0, max_retries: int = 5, jitter: float = 0.0):
        self.interval = _number(interval, "interval")
        self.jitter = _fraction(jitter)
        self.max_retries = integer(max_retries, "max_retries")

    def base_delay(self, retry: int) -> float:
        return self.interval


class LinearBackoff(RetryPolicy):
    """``base + step * (retry - 1)`` seconds, at most ``max_delay``."""

    def __init__(self, base: float = 0.1, step: float = 0.1, max_delay: float = 30.0,
                 jitter: float = 0.0, max_retries: int = 5):
        self.base = _number(base, "base")
        self.step = _number(step, "step")
        self.max_delay = _number(max_delay, "max_delay")
        self.jitter = _fraction(jitter)
        self.max_retries = integer(max_retries, "max_retries")

    def base_delay(self, retry: int) -> float:
        return min(self.max_delay, self.base + self.step * (retry - 1))


def _fraction(jitter: object) -> float:
    j = _number(jitter, "jitter")
    if j > 1:
        raise ConfigError(f"jitter is a fraction of the delay, from 0 to 1, got {jitter!r}")
    return j


# -- classification ------------------------------------------------------------------

DEFAULT_CLASSES: Dict[Type[BaseException], str] = {
    TransientError: TRANSIENT,
    ConnectionError: TRANSIENT,
    TimeoutError: TRANSIENT,
    BrokenPipeError: TRANSIENT,
    InterruptedError: TRANSIENT,
    BlockingIOError: TRANSIENT,
    RateLimitError: RATE_LIMIT,
    PermanentError: PERMANENT,
    ValueError: PERMANENT,
    TypeError: PERMANENT,
    LookupError: PERMANENT,
    AttributeError: PERMANENT,
    NotImplementedError: PERMANENT,
    AssertionError: PERMANENT,
    UnicodeError: PERMANENT,
    pickle.UnpicklingError: PERMANENT,
}


class ErrorClassifier:
    """Maps exception classes to ``"transient"``, ``"rate_limit"`` or
    ``"permanent"``.  ``classes`` is added over the defaults (or replaces them
    with ``defaults=False``); ``default`` is the kind of an exception no class
    matches.  The most specific class in the exception's MRO decides."""

    def __init__(self, classes: Optional[Dict[Type[BaseException], str]] = None,
                 default: str = TRANSIENT, defaults: bool = True):
        table = dict(DEFAULT_CLASSES) if defaults else {}
        for cls, kind in (classes or {}).items():
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                raise TypeError(f"classes are exception types, not {cls!r}")
            table[cls] = _kind(kind)
        self.classes = table
        self.default = _kind(default)

    def classify(self, error: BaseException) -> str:
        for cls in type(error).__mro__:
            kind = self.classes.get(cls)
            if kind is not None:
                return kind
        return self.default


def _kind(kind: object) -> str:
    if kind not in KINDS:
        raise ConfigError(f"an error kind is one of {', '.join(KINDS)}, got {kind!r}")
    return kind  # type: ignore[return-value]


class Retrying:
    """The classifier and a policy per retryable kind: :meth:`decide` tells what
    to do with a message whose handler raised ``error`` on its ``delivery``-th
    delivery (``Message.delivery_count``)."""

    def __init__(self, transient: Optional[RetryPolicy] = None, rate_limit: Optional[RetryPolicy] = None,
                 classifier: Optional[ErrorClassifier] = None):
        self.transient = transient if transient is not None else ExponentialBackoff()
        self.rate_limit = rate_limit if rate_limit is not None else FixedInterval(5.0, max_retries=10)
        self.classifier = classifier if classifier is not None else ErrorClassifier()
        for name, p in (("transient", self.transient), ("rate_limit", self.rate_limit)):
            if not isinstance(p, RetryPolicy):
                raise TypeError(f"{name} must be a RetryPolicy, not {type(p).__name__}")
        if not isinstance(self.classifier, ErrorClassifier):
            raise TypeError(f"classifier must be an ErrorClassifier, not {type(self.classifier).__name__}")

    def decide(self, error: BaseException, delivery: int) -> Tuple[str, Optional[float]]:
        """``(kind, delay)``: retry after ``delay`` seconds, or ``delay`` None for
        the dead letters (a permanent error, or the policy's retries used up)."""
        kind = self.classifier.classify(error)
        if kind == PERMANENT:
            return kind, None
        policy = self.rate_limit if kind == RATE_LIMIT else self.transient
        delay = policy.delay(delivery)
        after = getattr(error, "retry_after", None)
        if delay is not None and kind == RATE_LIMIT and isinstance(after, (int, float)) and after >= 0:
            delay = float(after)
        return kind, delay


def retrying_of(value: Optional[Retrying]) -> Retrying:
    """``value``, or the default ``Retrying()`` for None."""
    if value is None:
        return Retrying()
    if not isinstance(value, Retrying):
        raise TypeError(f"retrying must be a Retrying, not {type(value).__name__}")
    return value
