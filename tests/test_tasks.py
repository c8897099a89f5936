"""TaskQueue: submit returns at once, the status goes pending -> running -> done
(or failed), results are waited for, a worker killed mid-task leaves its task
to another; all with real worker processes."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

import shmbus
from shmbus import TaskFailedError, TaskNotFoundError

pytestmark = pytest.mark.timeout(90)
H = "_task_handlers:"
HANDLERS = {n: H + n for n in ("add", "steps", "bad_input", "flaky", "first_hangs",
                               "unpicklable_result")}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST_RETRY = shmbus.Retrying(transient=shmbus.FixedInterval(0.1, max_retries=3))


@pytest.fixture
def tasks(bus):
    with shmbus.TaskQueue(bus, "video", retrying=FAST_RETRY) as t:
        yield t


@pytest.fixture
def workers(tasks):
    w = tasks.serve(HANDLERS, processes=2).start()
    yield w
    w.stop()


def wait_state(tasks, task_id, state, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = tasks.status(task_id)
        if s.state == state:
            return s
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} stayed {tasks.status(task_id)}")


def test_a_task_goes_pending_running_done_with_its_result_and_progress(tasks, workers):
    task_id = tasks.submit("steps", 4, pause=0.2)
    s = tasks.status(task_id)
    assert s.state in ("pending", "running") and s.name == "steps" and s.submitted_ns > 0
    running = wait_state(tasks, task_id, "running")
    assert running.attempt == 1 and running.worker_pid in workers.pids
    assert tasks.result(task_id, timeout=20) == 4
    done = tasks.status(task_id)
    assert done.state == "done" and done.progress == 1.0 and done.note == "step 4"
    assert done.submitted_ns <= done.started_ns <= done.finished_ns
    assert tasks.result(tasks.submit("add", 2, b=3), timeout=20) == 5


def test_progress_is_seen_while_the_task_runs(tasks, workers):
    task_id = tasks.submit("steps", 10, pause=0.15)
    seen = set()
    end = time.monotonic() + 20
    while time.monotonic() < end and tasks.status(task_id).state != "done":
        p = tasks.status(task_id).progress
        if p is not None:
            seen.add(p)
        time.sleep(0.03)
    assert len([p for p in seen if 0 < p < 1]) >= 3


def test_a_permanent_error_fails_the_task_at_once(tasks, workers, bus):
    task_id = tasks.submit("bad_input", "x")
    with pytest.raises(TaskFailedError, match="ValueError: cannot parse 'x'") as e:
        tasks.result(task_id, timeout=20)
    assert e.value.status.state == "failed" and e.value.status.attempt == 1
    with bus.consumer("video.failed", start="earliest") as d:  # and the task is in the dead letters
        m = d.poll(timeout=5)
        assert m.key.decode() == task_id and pickle.loads(m.value)[0] == "bad_input"


def test_a_transient_error_is_retried_and_the_task_then_succeeds(tasks, workers, tmp_path):
    task_id = tasks.submit("flaky", str(tmp_path / "tried"))
    assert tasks.result(task_id, timeout=20) == "second time lucky"
    assert tasks.status(task_id).attempt == 2


def test_a_worker_killed_mid_task_leaves_it_to_another(tasks, workers, tmp_path):
    marker = tmp_path / "pid"
    task_id = tasks.submit("first_hangs", str(marker))
    first = wait_state(tasks, task_id, "running").worker_pid
    end = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < end:
        time.sleep(0.02)
    os.kill(first, signal.SIGKILL)
    second = tasks.result(task_id, timeout=30)
    assert second != first and tasks.status(task_id).attempt == 2


def test_unknown_tasks_and_results_that_do_not_pickle_fail(tasks, workers):
    with pytest.raises(TaskFailedError, match="no handler for task 'nope'"):
        tasks.result(tasks.submit("nope"), timeout=20)
    with pytest.raises(TaskFailedError, match="does not pickle"):
        tasks.result(tasks.submit("unpicklable_result"), timeout=20)


def test_bad_input_is_refused_at_submit_and_nothing_is_queued(tasks, bus):
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        tasks.submit("add", lambda: 1, 2)
    with pytest.raises(TypeError):
        tasks.submit(42)
    with pytest.raises(TaskNotFoundError):
        tasks.status("never-submitted")
    assert sum(p["published"] for p in bus.stats("video.tasks")["partitions"]) == 0
    with pytest.raises(shmbus.ConfigError):
        tasks.serve({"add": "no_such_module:add"})


def test_waiting_for_a_result_times_out_and_a_resubmitted_id_runs_once(tasks, bus):
    task_id = tasks.submit("add", 1, 1, task_id="order-7")
    assert tasks.submit("add", 1, 1, task_id="order-7") == "order-7"
    with pytest.raises(TimeoutError):
        tasks.result(task_id, timeout=0.3)  # no worker yet
    assert sum(p["published"] for p in bus.stats("video.tasks")["partitions"]) == 1
    w = tasks.serve(HANDLERS).start()
    try:
        assert tasks.result(task_id, timeout=20) == 2
    finally:
        w.stop()


def test_another_client_process_sees_the_status(tasks, workers, bus):
    task_id = tasks.submit("add", 20, 22)
    tasks.result(task_id, timeout=20)
    with shmbus.TaskQueue(bus, "video") as other:  # replays the status topic
        s = other.status(task_id)
        assert (s.state, s.result) == ("done", 42)


def test_the_video_upload_example_runs():
    r = subprocess.run([sys.executable, "-m", "shmbus.examples.video_upload", "--workers", "2",
                        "--videos", "1"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert "clip-0 thumbnail: 'clip-0.jpg'" in r.stdout and "attempt 2" in r.stdout
