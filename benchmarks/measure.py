"""Small tools for measuring: run in threads, time, take medians and percentiles."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence


def rate(work: Callable[[int], None], per_thread: int, threads: int) -> float:
    """Operations per second of ``work(i)`` run ``per_thread`` times in each of ``threads``."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def loop() -> None:
        barrier.wait()
        try:
            for index in range(per_thread):
                work(index)
        except BaseException as error:  # surfaced below, not lost in a thread
            errors.append(error)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return per_thread * threads / elapsed


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeats))


def interleaved_medians(
    repeats: int, measures: Mapping[str, Callable[[], float]]
) -> dict[str, float]:
    """The median of each measure, the measures taking turns: a machine that slows down
    mid-run slows every figure alike, and the ratios between them hold."""
    samples: dict[str, list[float]] = {key: [] for key in measures}
    for _ in range(repeats):
        for key, measure in measures.items():
            samples[key].append(measure())
    return {key: statistics.median(values) for key, values in samples.items()}


def interleaved_sample_medians(
    repeats: int, measures: Sequence[Callable[[], Mapping[str, float]]]
) -> dict[str, float]:
    """The same, for measures that each give several figures from one run."""
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for measure in measures:
            for key, value in measure().items():
                samples.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in samples.items()}


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def millis(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)
