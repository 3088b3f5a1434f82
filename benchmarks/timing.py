"""The benchmarks' one timer: a warm-up call, then the median, fastest and slowest of `repeat`
calls (wall time, perf_counter)."""
import statistics
import time


def timed(fn, repeat):
    fn()  # warm the page cache, the imports and the allocator
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)
