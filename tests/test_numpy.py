"""numpy arrays as messages: send_array / Message.array(), dtype and shape travel
along, zero-copy while the message is held, and across processes."""
import numpy as np
import pytest

import shmbus

pytestmark = pytest.mark.timeout(30)

STRUCTURED = np.dtype([("x", "<i4"), ("y", "<f8"), ("tag", "S3"), ("ok", "?")])
DTYPES = [np.uint8, np.int32, np.float64, np.complex128, np.bool_, STRUCTURED,
          np.dtype(">i8"), np.float16, np.dtype("U3")]
DTYPE_IDS = ["uint8", "int32", "float64", "complex128", "bool", "structured", "int64-big-endian",
             "float16", "unicode"]

SHAPES = [pytest.param((), id="0d"), pytest.param((7,), id="1d"),
          pytest.param((2, 3, 4), id="3d"), pytest.param((0,), id="empty-1d"),
          pytest.param((2, 0, 3), id="empty-3d")]


def sample(dtype, shape):
    """A deterministic array of the dtype and shape, with distinct values."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype.names is not None:
        a = np.zeros(n, dtype)
        a["x"] = np.arange(n) - 3
        a["y"] = np.arange(n) * 0.5
        a["tag"] = [b"t%d" % (i % 10) for i in range(n)]
        a["ok"] = np.arange(n) % 2 == 0
    elif dtype.kind == "b":
        a = np.arange(n) % 3 == 0
    elif dtype.kind == "U":
        a = np.array(["a%d" % i for i in range(n)], dtype)
    elif dtype.kind in "iu":
        a = (np.arange(n) * 37 + 11) % 100
    elif dtype.kind == "f":
        a = np.arange(n) * 1.25 - 2
    else:
        a = np.arange(n) * (1 - 0.5j)
    return np.asarray(a).astype(dtype).reshape(shape)


def equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture
def pipe(bus):
    bus.create_topic("arrays", capacity=2**20)
    c = bus.consumer("arrays")
    p = bus.producer("arrays")
    yield p, c
    p.close()
    c.close()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_round_trip(pipe, dtype, shape):
    p, c = pipe
    a = sample(dtype, shape)
    assert a.shape == shape
    p.send_array(a)
    m = c.poll(timeout=2.0)
    b = m.array()
    assert b.dtype == a.dtype
    assert b.shape == a.shape
    assert equal(a, b)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [
    pytest.param(lambda: np.arange(20, dtype=np.int32)[::3], id="strided"),
    pytest.param(lambda: np.arange(24, dtype=np.float64).reshape(4, 6).T, id="transposed"),
    pytest.param(lambda: np.asfortranarray(np.arange(24).reshape(2, 3, 4)), id="fortran"),
    pytest.param(lambda: np.arange(60, dtype=np.uint8).reshape(3, 4, 5)[:, ::2, 1:], id="sliced-3d"),
    pytest.param(lambda: np.arange(10, dtype=np.complex128)[::-1], id="reversed"),
    pytest.param(lambda: sample(STRUCTURED, (6,))[::2], id="structured-strided"),
    pytest.param(lambda: sample(STRUCTURED, (6,))["y"], id="field-view"),
])
def test_non_contiguous_input(pipe, make):
    p, c = pipe
    a = make()
    assert not a.flags.c_contiguous
    p.send_array(a)
    b = c.poll(timeout=2.0).array()
    assert b.flags.c_contiguous
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_array_is_zero_copy_while_held(pipe):
    p, c = pipe
    a = np.arange(1000, dtype=np.float64).reshape(10, 100)
    p.send_array(a)
    p.send_array(a * 2)
    m = c.poll(timeout=2.0)
    b = m.array()
    assert not b.flags.owndata
    assert np.shares_memory(b, np.frombuffer(m.view(), dtype=np.uint8))
    assert np.shares_memory(b, m.array())  # the ring, not a copy per call
    np.testing.assert_array_equal(a, b)
    n = c.poll(timeout=2.0)  # releases m
    with pytest.raises(shmbus.MessageReleasedError):
        m.view()
    # released but not yet overwritten: array() is a copy and still right
    late = m.array()
    np.testing.assert_array_equal(late, a)
    assert not np.shares_memory(late, np.frombuffer(n.view(), dtype=np.uint8))
    np.testing.assert_array_equal(n.array(), a * 2)


def test_array_headers_and_key(pipe):
    p, c = pipe
    off = p.send_array(np.arange(3), key="k", headers={"frame": "7", "raw": b"\x01"})
    assert isinstance(off, shmbus.Offset)
    m = c.poll(timeout=2.0)
    assert m.key == b"k"
    assert m.headers == {"frame": "7", "raw": b"\x01"}  # the array description is not shown
    np.testing.assert_array_equal(m.array(), np.arange(3))
    assert m.value == np.arange(3).tobytes()


def test_array_of_a_message_not_sent_as_array(pipe):
    p, c = pipe
    p.send(b"\x00" * 8)
    m = c.poll(timeout=2.0)
    with pytest.raises(TypeError):
        m.array()


def test_send_array_refuses_what_it_cannot_send(pipe):
    p, c = pipe
    for bad in ([1, 2, 3], b"abc", memoryview(b"abc"), 3.0):
        with pytest.raises(TypeError):
            p.send_array(bad)
    with pytest.raises(TypeError):
        p.send_array(np.array([object(), 1], dtype=object))
    with pytest.raises(shmbus.MessageTooLargeError):
        p.send_array(np.zeros(2**20 + 1, dtype=np.uint8))
    p.send_array(np.arange(4))
    np.testing.assert_array_equal(c.poll(timeout=2.0).array(), np.arange(4))
    assert c.poll(timeout=0) is None


def test_datetime_round_trip(pipe):
    p, c = pipe
    for a in (np.array(["2020-01-01", "2024-02-29"], dtype="datetime64[D]"),
              np.array([1, -5], dtype="timedelta64[ms]"),
              np.array("2024-01-01T12:00", dtype="datetime64[m]")):
        p.send_array(a)
        b = c.poll(timeout=2.0).array()
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(b, a)


def test_arrays_of_many_sizes_in_a_batch(pipe):
    p, c = pipe
    arrays = [np.full(i, i, dtype=np.int16) for i in range(0, 50, 7)]
    for a in arrays:
        p.send_array(a)
    got = []
    while len(got) < len(arrays):
        batch = c.poll_batch(100, timeout=2.0)
        assert batch
        got += [m.array().copy() for m in batch]
    for a, b in zip(arrays, got):
        assert equal(a, b)


# -- across processes -------------------------------------------------------------------

def _echo_arrays(bus_name, count):
    """Child: receive arrays on "in" (sent before it started) and send each back,
    doubled, on "out"."""
    b = shmbus.Bus(bus_name)
    c = b.consumer("in", start="earliest")
    p = b.producer("out")
    try:
        for _ in range(count):
            m = c.poll(timeout=20.0)
            if m is None:
                raise SystemExit(3)
            a = m.array()
            if a.dtype.names is None:
                out = a * 2 if a.dtype.kind != "b" else ~a
            else:
                out = a.copy()
                out["x"] *= 2
            p.send_array(out, key=m.key, headers={"seen": str(a.shape)})
    finally:
        p.close()
        c.close()
        b.close()


@pytest.mark.timeout(90)
def test_round_trip_across_a_spawn_child(bus, spawn):
    bus.create_topic("in", capacity=2**20)
    bus.create_topic("out", capacity=2**20)
    out = bus.consumer("out")
    arrays = [np.arange(12, dtype=np.int32).reshape(3, 4), np.linspace(0, 1, 7),
              np.array([1 + 2j, -3j]), np.array([True, False, True]),
              sample(STRUCTURED, (5,)), np.zeros((0,), dtype=np.uint8),
              np.arange(24, dtype=np.uint8).reshape(2, 3, 4)[:, ::-1]]
    with bus.producer("in") as p:  # published before any group on "in" exists
        for i, a in enumerate(arrays):
            p.send_array(a, key=f"k{i}")
    child = spawn.Process(target=_echo_arrays, args=(bus.name, len(arrays)))
    child.start()
    try:
        got = []
        while len(got) < len(arrays):
            m = out.poll(timeout=30.0)
            assert m is not None, "the child sent nothing back"
            got.append((m.key, m.headers, m.array().copy()))
        child.join(timeout=30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
        out.close()
    for i, (a, (key, headers, b)) in enumerate(zip(arrays, got)):
        assert key == f"k{i}".encode()
        assert headers == {"seen": str(a.shape)}
        assert b.dtype == a.dtype and b.shape == a.shape
        if a.dtype.names is None:
            np.testing.assert_array_equal(b, a * 2 if a.dtype.kind != "b" else ~a)
        else:
            np.testing.assert_array_equal(b["x"], a["x"] * 2)
            np.testing.assert_array_equal(b["y"], a["y"])
            np.testing.assert_array_equal(b["tag"], a["tag"])
