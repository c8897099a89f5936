"""numpy arrays as message values: the dtype and shape travel in a reserved header."""
import ast
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
    descr = repr((npformat.dtype_to_descr(array.dtype), array.shape))
    # as flat bytes: works for 0-d, empty and datetime arrays alike
    return memoryview(array.reshape(-1).view(np.uint8)), descr


def restore(buffer: Any, descr: str) -> np.ndarray:
    """An array over ``buffer`` (no copy) as described by ``prepare``."""
    try:
        dtype_descr, shape = ast.literal_eval(descr)
        dtype = npformat.descr_to_dtype(dtype_descr)
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, RecursionError,
            MemoryError, OverflowError):  # whatever a garbled description makes them raise
        raise CorruptSegmentError(f"bad array description {descr[:80]!r}") from None
