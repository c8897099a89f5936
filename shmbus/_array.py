"""numpy arrays as message values: the dtype and shape travel in a reserved header."""
import ast
import functools
from typing import Any, Tuple

import numpy as np
from numpy.lib import format as npformat

from ._errors import CorruptSegmentError


def prepare(array: Any) -> Tuple[memoryview, str]:
    """The bytes of ``array`` (C order) and its description."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"send_array takes a numpy.ndarray, not {type(array).__name__}")
    if array.dtype.hasobject:
        raise TypeError("arrays of Python objects cannot be sent; pickle them instead")
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    descr = _describe(array.dtype, array.shape)
    # as flat bytes: works for 0-d, empty and datetime arrays alike
    return memoryview(array.reshape(-1).view(np.uint8)), descr


@functools.lru_cache(maxsize=256)
def _describe(dtype: np.dtype, shape: Tuple[int, ...]) -> str:
    return repr((npformat.dtype_to_descr(dtype), shape))


@functools.lru_cache(maxsize=256)
def _parse(descr: str) -> Tuple[np.dtype, Tuple[int, ...]]:
    dtype_descr, shape = ast.literal_eval(descr)
    return npformat.descr_to_dtype(dtype_descr), tuple(shape)


def is_array(values: Any) -> bool:
    return isinstance(values, np.ndarray)


def rows(array: np.ndarray) -> Tuple[memoryview, np.ndarray, int]:
    """For ``send_many`` of an array: each element along the first axis is one
    message.  Its bytes end to end, the lengths, and the length of one."""
    if array.ndim == 0:
        raise TypeError("send_many of a 0-d array: send() it, or give a 1-d array of messages")
    if array.dtype.hasobject:
        raise TypeError("arrays of Python objects cannot be sent; pickle them instead")
    array = np.ascontiguousarray(array)
    count = array.shape[0]
    size = array.nbytes // count if count else 0
    return (memoryview(array.reshape(-1).view(np.uint8)), np.full(count, size, np.uint64), size)


def restore(buffer: Any, descr: str) -> np.ndarray:
    """An array over ``buffer`` (no copy) as described by ``prepare``."""
    try:
        dtype, shape = _parse(descr)  # the same few descriptions, message after message
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, RecursionError,
            MemoryError, OverflowError):  # whatever a garbled description makes them raise
        raise CorruptSegmentError(f"bad array description {descr[:80]!r}") from None
