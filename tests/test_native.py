"""The C core's own tests (tests/native/*_test.c), built with gcc and run plain
and under AddressSanitizer + UndefinedBehaviorSanitizer."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "native")
SOURCES = sorted(glob.glob(os.path.join(NATIVE, "*.c")))
TESTS = sorted(glob.glob(os.path.join(ROOT, "tests", "native", "*_test.c")))

BUILDS = {
    "plain": ["-O2"],
    "sanitizers": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=undefined"],
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("test", TESTS, ids=lambda path: os.path.basename(path)[:-len("_test.c")])
def test_c_core(build, test, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    name = os.path.basename(test)[:-len(".c")]
    exe = tmp_path / name
    cmd = ["gcc", "-std=gnu11", "-mcx16", "-Wall", "-Wextra", "-Wno-unused-parameter", "-I", NATIVE,
           *BUILDS[build], test, *SOURCES, "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0 and build == "sanitizers" and "asan" in built.stderr.lower():
        pytest.skip("this gcc has no sanitizer runtime")
    assert built.returncode == 0, built.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=100, env=env)
    assert run.returncode == 0 and f"{name}: ok" in run.stdout, run.stdout + run.stderr
