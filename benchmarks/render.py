"""Rendering: `prototxt-gen render resnet152` to SVG (plain and --collapse) and to the HTML
report, each a fresh process as a user runs it, against Graphviz's `dot -Tsvg` alone laying out
the same DOT source (the floor: what any Graphviz-based renderer pays), in the same run.

    python benchmarks/render.py [--runs 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd, runs, env=None) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "prototxt_gen", "render", "resnet152"]
    version = subprocess.run(["dot", "-V"], capture_output=True, text=True).stderr.strip()
    print(f"{version}; {os.cpu_count()} CPUs; median of {args.runs} fresh processes")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for collapse in (False, True):
            extra = ["--collapse"] if collapse else []
            subprocess.run(cli + ["-o", tmp / "r152.dot"] + extra, check=True, env=env)
            base = timed(["dot", "-Tsvg", "-o", tmp / "dot.svg", tmp / "r152.dot"], args.runs)
            ours = timed(cli + ["-o", tmp / "r152.svg"] + extra, args.runs, env)
            html = timed(cli + ["-o", tmp / "r152.html"] + extra, args.runs, env)
            tag = "--collapse" if collapse else "plain"
            print(f"ResNet-152 {tag}: dot -Tsvg alone {base:.2f} s | prototxt-gen render "
                  f"-o .svg {ours:.2f} s = {ours / base:.2f}x | -o .html (graph + tables) "
                  f"{html:.2f} s = {html / base:.2f}x; SVG {(tmp / 'r152.svg').stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
