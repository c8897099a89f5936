"""Runnable examples of the processing patterns, each ``python -m shmbus.examples.NAME``."""
