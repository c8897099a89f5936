"""Retry policies and the error classifier (shmbus/_retry.py): the delays each
policy gives, the kinds the classifier picks, and clear errors for bad settings."""
import pickle

import pytest

import shmbus

pytestmark = pytest.mark.timeout(10)


def test_exponential_backoff_doubles_up_to_its_ceiling_then_gives_up():
    p = shmbus.ExponentialBackoff(base=0.1, factor=2, max_delay=0.5, jitter=0, max_retries=5)
    assert p.delays() == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert [p.delay(r) for r in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, None])
    assert p.delay(6) is None


def test_huge_retry_numbers_stay_at_the_ceiling():
    p = shmbus.ExponentialBackoff(base=1, factor=10, max_delay=60, jitter=0, max_retries=10**6)
    assert p.delay(10**5) == 60


def test_jitter_spreads_within_its_fraction():
    p = shmbus.ExponentialBackoff(base=1, factor=1, max_delay=10, jitter=0.2, max_retries=1000)
    seen = [p.delay(1) for _ in range(1000)]
    assert all(0.8 <= d <= 1.2 for d in seen)
    assert max(seen) - min(seen) > 0.2  # really spread


def test_fixed_and_linear():
    assert shmbus.FixedInterval(0.3, max_retries=3).delays() == [0.3, 0.3, 0.3]
    lin = shmbus.LinearBackoff(base=0.1, step=0.2, max_delay=0.45, max_retries=4)
    assert lin.delays() == pytest.approx([0.1, 0.3, 0.45, 0.45])
    assert shmbus.FixedInterval(1, max_retries=0).delay(1) is None


@pytest.mark.parametrize("make, error", [
    (lambda: shmbus.ExponentialBackoff(base=-1), shmbus.ConfigError),
    (lambda: shmbus.ExponentialBackoff(factor=0.5), shmbus.ConfigError),
    (lambda: shmbus.ExponentialBackoff(jitter=2), shmbus.ConfigError),
    (lambda: shmbus.ExponentialBackoff(max_delay=float("nan")), shmbus.ConfigError),
    (lambda: shmbus.ExponentialBackoff(max_delay=float("inf")), shmbus.ConfigError),
    (lambda: shmbus.FixedInterval(max_retries=-1), shmbus.ConfigError),
    (lambda: shmbus.FixedInterval("1"), TypeError),
    (lambda: shmbus.FixedInterval(1, max_retries=2.5), TypeError),
    (lambda: shmbus.LinearBackoff(step=True), TypeError),
    (lambda: shmbus.ErrorClassifier({ValueError: "sometimes"}), shmbus.ConfigError),
    (lambda: shmbus.ErrorClassifier({"ValueError": "permanent"}), TypeError),
    (lambda: shmbus.ErrorClassifier(default="never"), shmbus.ConfigError),
    (lambda: shmbus.Retrying(transient=3), TypeError),
])
def test_bad_settings_are_refused_clearly(make, error):
    with pytest.raises(error):
        make()
    assert issubclass(shmbus.ConfigError, ValueError)


def test_the_default_classification():
    c = shmbus.ErrorClassifier()
    assert c.classify(ConnectionRefusedError()) == "transient"   # an OSError, but a connection one
    assert c.classify(TimeoutError()) == "transient"
    assert c.classify(shmbus.TransientError()) == "transient"
    assert c.classify(shmbus.RateLimitError(retry_after=2)) == "rate_limit"
    assert c.classify(KeyError("k")) == "permanent"
    assert c.classify(pickle.UnpicklingError()) == "permanent"
    assert c.classify(shmbus.PermanentError()) == "permanent"
    assert c.classify(RuntimeError()) == "transient"              # unknown: retried, within the maximum


def test_the_most_specific_class_decides_and_overrides_apply():
    class FlakyValue(ValueError):
        pass

    c = shmbus.ErrorClassifier({FlakyValue: "transient", OSError: "permanent"})
    assert c.classify(FlakyValue()) == "transient"
    assert c.classify(ValueError()) == "permanent"
    assert c.classify(FileNotFoundError()) == "permanent"
    assert c.classify(ConnectionResetError()) == "transient"      # ConnectionError is nearer than OSError
    bare = shmbus.ErrorClassifier({KeyError: "rate_limit"}, default="permanent", defaults=False)
    assert bare.classify(KeyError()) == "rate_limit" and bare.classify(TimeoutError()) == "permanent"


def test_retrying_decides_delay_or_dead_letter():
    r = shmbus.Retrying(transient=shmbus.FixedInterval(0.5, max_retries=2),
                        rate_limit=shmbus.FixedInterval(3.0, max_retries=1))
    assert r.decide(ConnectionError(), 1) == ("transient", 0.5)
    assert r.decide(ConnectionError(), 2) == ("transient", 0.5)
    assert r.decide(ConnectionError(), 3) == ("transient", None)   # retries used up
    assert r.decide(ValueError(), 1) == ("permanent", None)        # at once
    assert r.decide(shmbus.RateLimitError(), 1) == ("rate_limit", 3.0)
    assert r.decide(shmbus.RateLimitError(retry_after=7), 1) == ("rate_limit", 7.0)
    assert r.decide(shmbus.RateLimitError(retry_after=7), 2) == ("rate_limit", None)
