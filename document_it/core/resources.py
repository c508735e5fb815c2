"""CPU and memory of a run: the main process and every worker below it, sampled with psutil."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

__all__ = ["ResourceSampler"]


class ResourceSampler:
    """Samples RSS (summed over the process tree) and CPU % in a background thread; `with` starts/stops it."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.samples = 0
        self.peak_rss = 0
        self.peak_cpu = 0.0
        self.peak_processes = 1
        self._cpu_sum = 0.0
        self._root = psutil.Process()
        self._known: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        self._started = time.perf_counter()
        self._cpu_start = self._cpu_seconds()

    def __enter__(self) -> "ResourceSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval_s * 4 + 1)
        self.sample()  # at least one sample, even for a run shorter than the interval

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        """Measure the tree once: RSS summed, CPU % since the last sample (100 = one core busy)."""
        tree = [self._root, *self._children()]
        rss, cpu = 0, 0.0
        for process in tree:
            try:
                rss += process.memory_info().rss
                cpu += process.cpu_percent(None)  # since this Process object's previous call
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_cpu = max(self.peak_cpu, cpu)
        self.peak_processes = max(self.peak_processes, len(tree))
        self._cpu_sum += cpu

    def _children(self) -> list[psutil.Process]:
        try:
            found = self._root.children(recursive=True)
        except psutil.Error:
            return []
        # keep one Process object per pid, so cpu_percent() measures from its previous sample
        current = {child.pid: self._known.get(child.pid, child) for child in found}
        self._known = current
        return list(current.values())

    def _cpu_seconds(self) -> float:
        times = self._root.cpu_times()
        return times.user + times.system

    def summary(self) -> dict[str, Any]:
        """run.json's `resources`: peaks over the run, and CPU time per wall second."""
        if not self.samples:  # a run shorter than the interval, summed up before the sampler stops
            self.sample()
        wall = max(time.perf_counter() - self._started, 1e-9)
        return {
            "peak_rss_mb": round(self.peak_rss / 1e6, 1),
            "peak_cpu_percent": round(self.peak_cpu, 1),
            "mean_cpu_percent": round(self._cpu_sum / self.samples, 1) if self.samples else 0.0,
            "peak_processes": self.peak_processes,
            "main_cpu_seconds": round(self._cpu_seconds() - self._cpu_start, 2),
            "cores": psutil.cpu_count() or 1,
            "samples": self.samples,
            "wall_seconds": round(wall, 2),
        }
