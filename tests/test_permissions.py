"""Segments that could have been planted or changed by someone else are refused
with UnsafeSegmentError; a topic whose mode lets every user write is refused at
creation; another layout version is named in the error."""
import os
import stat

import pytest

import shmbus

pytestmark = pytest.mark.timeout(60)
SHM = "/dev/shm"


def meta_path(bus, topic="t"):
    return os.path.join(SHM, f"shmbus:{bus.name}:{topic}:meta")


def test_a_symbolic_link_in_place_of_a_segment_is_refused(bus, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"\0" * 65536)
    os.symlink(target, meta_path(bus))
    try:
        with pytest.raises(shmbus.UnsafeSegmentError, match="symbolic link"):
            bus.producer("t")
        with pytest.raises(shmbus.UnsafeSegmentError, match="symbolic link"):
            bus.create_topic("t")
        assert target.read_bytes() == b"\0" * 65536  # never written through the link
    finally:
        os.unlink(meta_path(bus))


def test_a_fifo_in_place_of_a_segment_is_refused(bus):
    os.mkfifo(meta_path(bus), 0o600)
    try:
        with pytest.raises(shmbus.UnsafeSegmentError, match="not a regular file"):
            bus.consumer("t")
    finally:
        os.unlink(meta_path(bus))


def test_a_segment_every_user_may_write_is_refused(bus):
    bus.create_topic("t", capacity=4096)
    os.chmod(meta_path(bus), 0o666)
    with shmbus.Bus(bus.name) as other:  # a fresh view maps the topic again
        with pytest.raises(shmbus.UnsafeSegmentError, match="writable by every user"):
            other.producer("t")
    os.chmod(meta_path(bus), 0o600)
    with shmbus.Bus(bus.name) as other, other.producer("t") as p:
        p.send(b"fine again")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_segment_of_another_user_is_refused_unless_shared_with_our_group(bus):
    bus.create_topic("t", capacity=4096)
    os.chown(meta_path(bus), 54321, 54321)
    with shmbus.Bus(bus.name) as other:
        with pytest.raises(shmbus.UnsafeSegmentError, match="another user"):
            other.consumer("t")
    # shared on purpose: group read-write, and this process is in the group
    os.chown(meta_path(bus), 54321, os.getegid())
    os.chmod(meta_path(bus), 0o660)
    with shmbus.Bus(bus.name) as other, other.consumer("t"):
        pass


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o622])
def test_a_mode_that_lets_every_user_write_is_refused(bus, mode):
    with pytest.raises(shmbus.ConfigError, match="every user"):
        bus.create_topic("t", mode=mode)
    assert bus.topics() == []


def test_segments_are_made_exclusively(bus):
    """A file found at a segment's name is never written into: one with no
    version and no live creator is what a creator that died leaves, and it is
    replaced by a new file, made exclusively."""
    keep = os.path.join(SHM, f"shmbus-test-keep-{bus.name}")
    with open(meta_path(bus), "wb") as f:
        f.write(b"planted")
    os.chmod(meta_path(bus), 0o600)
    os.link(meta_path(bus), keep)
    try:
        bus.create_topic("t", capacity=4096)
        assert not os.path.samefile(meta_path(bus), keep)
        with open(keep, "rb") as f:
            assert f.read() == b"planted"
    finally:
        os.unlink(keep)


def test_another_layout_version_is_named(bus):
    bus.create_topic("t", capacity=4096)
    version_at = 8  # the header: magic (8 bytes), then the layout version
    with open(meta_path(bus), "r+b") as f:
        f.seek(version_at)
        f.write((99).to_bytes(4, "little"))
    with shmbus.Bus(bus.name) as other:
        with pytest.raises(shmbus.CorruptSegmentError,
                           match=f"version 99; this shmbus reads version {shmbus._native.lib.SHMBUS_LAYOUT_VERSION}"):
            other.producer("t")


def test_modes_stay_exact(bus):
    bus.create_topic("t", capacity=4096, mode=0o640)
    assert stat.S_IMODE(os.stat(meta_path(bus)).st_mode) == 0o640
