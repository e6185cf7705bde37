"""The compute a run has spent: process CPU and wall seconds over all its processes (resumes).

Both trainers save `Clock.array()` with their state and give it back to `Clock.start` when they
resume, so curves can be plotted against the compute spent so far and runs compared at equal
CPU time (`--max_cpu_seconds`). Held-out evaluation is counted apart, so a run's training CPU
time is the same with or without it.
"""

import time

import numpy as np

# The run's cumulative seconds, in the order of `Clock.array()`.
COMPUTE = ("cpu_seconds", "wall_seconds", "eval_cpu_seconds", "eval_wall_seconds")


class Clock:
    """What earlier processes of a run spent (`start(base)`) plus what this one has spent."""

    def __init__(self):
        self.start()

    def start(self, base=None):
        """Counts this process from now on, on top of `base` (an `array()` of earlier
        processes; None: nothing before)."""
        self.base = np.zeros(len(COMPUTE)) if base is None else np.asarray(base, np.float64)
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        self.eval_cpu = self.eval_wall = 0.0

    def array(self):
        """The totals in the order of COMPUTE, to save with the run's state."""
        return self.base + np.array([time.process_time() - self.cpu,
                                     time.perf_counter() - self.wall,
                                     self.eval_cpu, self.eval_wall])

    def totals(self):
        """name → total seconds so far (COMPUTE)."""
        return dict(zip(COMPUTE, self.array().tolist()))

    def process_wall(self):
        """Wall seconds of this process since `start`."""
        return time.perf_counter() - self.wall

    def training_cpu(self):
        """CPU seconds of the run so far less those of held-out evaluation."""
        cpu, _, eval_cpu, _ = self.array()
        return cpu - eval_cpu

    def timed_evaluation(self, evaluate):
        """Runs `evaluate()`, counting its CPU and wall time as evaluation; returns its result."""
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return evaluate()
        finally:
            self.eval_cpu += time.process_time() - cpu
            self.eval_wall += time.perf_counter() - wall
