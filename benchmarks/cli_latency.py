"""Wall time of `prototxt-gen resnet152 > /dev/null` against starting Python and importing
protobuf, measured in the same run.

    python benchmarks/cli_latency.py [--repeat 30]

Each command runs as a fresh process, as a user would start it. Reported: the median and the
spread (min-max) of the wall times, and the median as a multiple of the baseline's.
Target (issue 2): median <= 0.25 s on the 2-core machine.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.25


def timed(cmd, repeat, warmup=3):
    for _ in range(warmup):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    script = shutil.which("prototxt-gen", path=os.path.dirname(sys.executable)) or \
        shutil.which("prototxt-gen")
    cli = [script] if script else [sys.executable, "-m", "prototxt_gen"]
    cases = [
        ("baseline: python -c 'import google.protobuf'",
         [sys.executable, "-c", "import google.protobuf"]),
        ("prototxt-gen resnet50", cli + ["resnet50"]),
        ("prototxt-gen resnet152", cli + ["resnet152"]),
        ("prototxt-gen resnet152 --layout modern", cli + ["resnet152", "--layout", "modern"]),
    ]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.repeat} runs each\n")
    print(f"{'command':<44} {'median':>9} {'min-max':>17} {'x baseline':>11}")
    medians = {}
    for name, cmd in cases:
        times = timed(cmd, args.repeat)
        medians[name] = med = statistics.median(times)
        base = medians[cases[0][0]]
        print(f"{name:<44} {med * 1000:7.1f}ms {min(times) * 1000:7.1f}-{max(times) * 1000:.1f}ms"
              f" {med / base:10.2f}x")
    r152 = medians["prototxt-gen resnet152"]
    verdict = "met" if r152 <= TARGET_S else "MISSED"
    print(f"\ntarget: resnet152 median <= {TARGET_S * 1000:.0f} ms -> {r152 * 1000:.1f} ms, "
          f"{verdict}")
    return 0 if r152 <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
