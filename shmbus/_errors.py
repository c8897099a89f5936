"""The shmbus exception family: every error the library raises derives from
ShmbusError; those that are also a standard error inherit from both."""


class ShmbusError(Exception):
    """Base class of every error raised by shmbus."""


class BusFull(ShmbusError):
    """A send found no room: the topic's ``on_full`` is ``"error"``, or ``"block"``
    waited for its timeout.  From ``send_many``, ``accepted`` tells how many of
    the messages were published before it was raised."""

    accepted: int = 0


class MessageTooLargeError(ShmbusError, ValueError):
    """A value exceeds the topic's ``max_message_size``, a key exceeds 1 KiB, or the
    encoded headers exceed 16 KiB.  Raised at once, never after waiting."""


class InvalidNameError(ShmbusError, ValueError):
    """A bus, topic or group name is empty, longer than 100 characters, has characters
    outside letters, digits, ``.``, ``_``, ``-``, or starts with ``.``."""


class ConfigError(ShmbusError, ValueError):
    """A configuration value is out of range or unknown (``partitions=0``, an unknown
    ``on_full``, a negative timeout)."""


class ConfigMismatchError(ConfigError):
    """``create_topic(..., exist_ok=True)`` found the topic created with another value
    for an option the call gave explicitly; or a consumer joins a named group that
    exists with another ``ack``, ``ordering``, ``max_deliveries`` or ``tethered``."""


class TopicNotFoundError(ShmbusError, LookupError):
    """Producing to, consuming from or deleting a topic that does not exist."""


class BusNotFoundError(ShmbusError, LookupError):
    """``Bus(name, create=False)`` found no such bus."""


class GroupNotFoundError(ShmbusError, LookupError):
    """``Bus.delete_group`` of a group the topic does not have."""


class TopicExistsError(ShmbusError, FileExistsError):
    """``create_topic`` of a topic that exists, without ``exist_ok=True``."""


class CorruptSegmentError(ShmbusError):
    """A segment failed validation: magic, layout version, sizes, offsets or
    checksums; or it was never finished by its creator."""


class UnsafeSegmentError(ShmbusError, PermissionError):
    """A segment that could have been planted or changed by someone else, refused:
    a symbolic link, not a regular file, writable by others, or owned by another
    user (unless its mode shares it with a group this process is in)."""


class ClosedError(ShmbusError):
    """Using a bus, producer or consumer after ``close()``."""


class AckError(ShmbusError, ValueError):
    """``ack`` or ``nack`` of a message this consumer did not receive (another
    consumer's, another group's), or ``nack`` under ``ack="auto"``."""


class MessageReleasedError(ShmbusError):
    """A message's bytes were read after the consumer released it (a later poll) and
    the ring has since reused them; or ``view()`` was asked for after release."""
