# setuptools takes cffi_modules only from setup.py; everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["native/build_ffi.py:ffibuilder"],
    # the Python API's shortest paths (send, poll, value), written against CPython's C API
    ext_modules=[Extension("shmbus._fast", ["shmbus/_fast.c"], extra_compile_args=["-O2", "-Wall"])],
)
