"""Topic and consumer options: their allowed values and how they map to the C core."""
import math
import os
from typing import Any, Dict, Optional

from ._errors import ConfigError
from ._native import lib

ON_FULL = {
    "block": lib.SHMBUS_ON_FULL_BLOCK,
    "drop_newest": lib.SHMBUS_ON_FULL_DROP_NEWEST,
    "drop_oldest": lib.SHMBUS_ON_FULL_DROP_OLDEST,
    "spill": lib.SHMBUS_ON_FULL_SPILL,
    "error": lib.SHMBUS_ON_FULL_ERROR,
}
RETENTION = {"consumed": lib.SHMBUS_RETENTION_CONSUMED, "log": lib.SHMBUS_RETENTION_LOG}
FSYNC = {"never": lib.SHMBUS_FSYNC_NEVER, "batch": lib.SHMBUS_FSYNC_BATCH,
         "always": lib.SHMBUS_FSYNC_ALWAYS}
START = {
    "earliest": lib.SHMBUS_START_EARLIEST,
    "latest": lib.SHMBUS_START_LATEST,
    "committed": lib.SHMBUS_START_COMMITTED,
}
ACK = {"auto": lib.SHMBUS_ACK_AUTO, "manual": lib.SHMBUS_ACK_MANUAL}
ORDERING = {"partition": lib.SHMBUS_ORDERING_PARTITION, "none": lib.SHMBUS_ORDERING_NONE}
# Deadlines are kept in a clock of limited width (see shmbus_layout.h): an
# ack_timeout or nack delay is at most a year.
MAX_DELAY = float(lib.SHMBUS_MAX_DELAY_S)



def name_of(table: Dict[str, int], value: int) -> str:
    """The name a table gives a stored value (the number itself if none does)."""
    return next((k for k, v in table.items() if v == value), str(value))


# What the current core implements; the rest of each list is accepted by name and
# refused with NotImplementedError until it lands.
ON_FULL_READY = ("block", "drop_newest", "drop_oldest", "spill", "error")

TOPIC_DEFAULTS: Dict[str, Any] = {
    "partitions": 1,
    "capacity": 64 * 2**20,
    "max_message_size": 2**20,
    "max_messages": None,
    "on_full": "block",
    "retention": "consumed",
    "retention_bytes": None,
    "retention_seconds": None,
    "fsync": "never",
    "dedup_window": 600.0,
    "dedup_capacity": 16384,
    "spill_dir": None,
    "spill_bytes": 2**30,
    "mode": 0o600,
}

# A record costs at least one index slot; by default the index has one slot per
# 256 data bytes, so many tiny messages fill the index before the data region.
BYTES_PER_SLOT = 256


def pow2_at_least(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def choice(value: Any, allowed, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def integer(value: Any, what: str, minimum: int = 0, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{what} must be {bound}, got {value}")
    return value


def seconds(value: Any, what: str, allow_none: bool = True) -> Optional[float]:
    """A timeout or duration in seconds: None (if allowed) or a number >= 0."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{what} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if value < 0 or value != value:
        raise ConfigError(f"{what} must be >= 0, got {value}")
    return float(value)


def topic_config(given: Dict[str, Any]) -> Dict[str, Any]:
    """Validate create_topic's options (defaults filled in) and derive the geometry."""
    unknown = set(given) - set(TOPIC_DEFAULTS)
    if unknown:
        raise TypeError(f"create_topic() got unexpected options: {', '.join(sorted(unknown))}")
    c = dict(TOPIC_DEFAULTS, **given)
    integer(c["partitions"], "partitions", 1, lib.SHMBUS_MAX_PARTITIONS)
    integer(c["capacity"], "capacity", 64, 2**40)
    integer(c["max_message_size"], "max_message_size", 1)
    choice(c["on_full"], ON_FULL, "on_full")
    choice(c["retention"], RETENTION, "retention")
    choice(c["fsync"], FSYNC, "fsync")
    integer(c["mode"], "mode", 0, 0o777)
    if c["mode"] & 0o002:
        # segments every user may write are refused when opened (UnsafeSegmentError)
        raise ConfigError(f"mode {c['mode']:#o} lets every user write the topic; share it with "
                          "a group instead (0o660)")
    seconds(c["dedup_window"], "dedup_window", allow_none=False)
    integer(c["dedup_capacity"], "dedup_capacity", 0, lib.SHMBUS_MAX_DEDUP_CAPACITY)
    for k in ("retention_bytes", "spill_bytes"):
        if c[k] is not None:
            integer(c[k], k, 0)
    seconds(c["retention_seconds"], "retention_seconds")
    c["capacity"] = pow2_at_least(c["capacity"])
    if "max_message_size" not in given:
        c["max_message_size"] = min(c["max_message_size"], c["capacity"])
    if c["max_message_size"] > c["capacity"]:
        raise ConfigError(
            f"max_message_size ({c['max_message_size']}) exceeds the capacity ({c['capacity']})"
        )
    if c["max_messages"] is None:
        c["max_messages"] = pow2_at_least(max(16, c["capacity"] // BYTES_PER_SLOT))
    else:  # exact; the index has the power of two at or above it (slot_count)
        c["max_messages"] = integer(c["max_messages"], "max_messages", 1, 2**32)
    c["slot_count"] = pow2_at_least(max(2, c["max_messages"]))
    if c["spill_dir"] is not None and not isinstance(c["spill_dir"], (str, bytes, os.PathLike)):
        raise TypeError(f"spill_dir must be a str or os.PathLike, not {type(c['spill_dir']).__name__}")
    if c["on_full"] != "spill" and ("spill_dir" in given or "spill_bytes" in given):
        raise ConfigError("spill_dir and spill_bytes are for on_full='spill'")
    if c["on_full"] not in ON_FULL_READY:
        raise NotImplementedError(f"on_full={c['on_full']!r} is not implemented yet")
    if c["retention"] == "consumed" and (c["retention_bytes"] or c["retention_seconds"]):
        raise ConfigError("retention_bytes and retention_seconds are for retention='log'")
    if c["retention_bytes"] is not None and c["retention_bytes"] > c["capacity"]:
        raise ConfigError(f"retention_bytes ({c['retention_bytes']}) exceeds the capacity "
                          f"({c['capacity']}): a ring keeps at most its capacity")
    return c
