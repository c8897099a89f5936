"""A video upload site's background work, with :class:`shmbus.TaskQueue`.

A user uploads a video: the web request queues a ``transcode`` task per
resolution and a ``thumbnail`` task and answers at once with their ids; a pool
of worker processes runs them (reporting progress); the client asks for their
status until all are done.  One thumbnail fails on its first attempt (the
storage did not answer) and succeeds when retried.

    python -m shmbus.examples.video_upload [--workers 3] [--videos 2]
"""
import argparse
import os
import tempfile
import time

import shmbus

RESOLUTIONS = (480, 720, 1080)


# -- the handlers: module-level functions, so that worker processes import them ------

def transcode(video: str, height: int) -> str:
    frames = height // 120  # a bigger picture takes longer
    for i in range(frames):
        time.sleep(0.05)
        shmbus.report_progress((i + 1) / frames, f"frame batch {i + 1} of {frames}")
    return f"{video}.{height}p.mp4"


def thumbnail(video: str, flaky_marker: str) -> str:
    if not os.path.exists(flaky_marker):  # the storage fails once, then answers
        open(flaky_marker, "w").close()
        raise ConnectionError("storage did not answer")
    time.sleep(0.1)
    return f"{video}.jpg"


# by name: run as ``python -m``, this module is __main__, which workers do not import
HANDLERS = {name: f"shmbus.examples.video_upload:{name}" for name in ("transcode", "thumbnail")}


# -- the client ----------------------------------------------------------------------

def upload(tasks: shmbus.TaskQueue, video: str, scratch: str) -> dict:
    """What the web request does: queue the work, answer with the task ids."""
    ids = {f"{h}p": tasks.submit("transcode", video, h) for h in RESOLUTIONS}
    ids["thumbnail"] = tasks.submit("thumbnail", video, os.path.join(scratch, video))
    return ids


def show(tasks: shmbus.TaskQueue, uploads: dict) -> bool:
    """One look at every task's status; True when all have finished."""
    finished = True
    for video, ids in uploads.items():
        cells = []
        for what, task_id in ids.items():
            s = tasks.status(task_id)
            finished = finished and s.finished
            progress = f" {s.progress:.0%}" if s.state == "running" and s.progress else ""
            retry = " (retrying)" if s.state == "pending" and s.error else ""
            cells.append(f"{what} {s.state}{progress}{retry}")
        print(f"  {video}: " + ", ".join(cells))
    return finished


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--videos", type=int, default=2)
    args = ap.parse_args(argv)
    retrying = shmbus.Retrying(transient=shmbus.ExponentialBackoff(base=0.2, max_retries=3))
    bus = shmbus.Bus(f"video-upload-{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory() as scratch, \
                shmbus.TaskQueue(bus, "video", retrying=retrying) as tasks, \
                tasks.serve(HANDLERS, processes=args.workers) as workers:
            print(f"{args.workers} worker processes: {workers.pids}")
            uploads = {f"clip-{i}": upload(tasks, f"clip-{i}", scratch) for i in range(args.videos)}
            print(f"queued {sum(len(v) for v in uploads.values())} tasks; the client asks for their "
                  "status:")
            end = time.monotonic() + 60
            while not show(tasks, uploads) and time.monotonic() < end:
                time.sleep(0.4)
            print("results:")
            for video, ids in uploads.items():
                for what, task_id in ids.items():
                    s = tasks.status(task_id)
                    took = (s.finished_ns - s.submitted_ns) / 1e9
                    print(f"  {video} {what}: {s.result!r} after {took:.2f} s, "
                          f"attempt {s.attempt}, worker {s.worker_pid}")
    finally:
        bus.unlink()
        bus.close()


if __name__ == "__main__":
    main()
