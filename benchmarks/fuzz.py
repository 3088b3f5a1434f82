"""The long fuzz run: by default 10,000 of tests/fuzzing.py's cases (mutated zoo prototxts,
synthesized nets, damaged caffemodels written by our writer, mutated specs, odd output paths)
through every command, each in a forked child with a 20 s limit, `--jobs` at a time.

    python benchmarks/fuzz.py [--cases 0:10000] [--jobs 2] [--results fuzz.jsonl] [--show]

Resumable: results are appended to --results as JSON lines and the cases already there are not
run again. Prints the table per command: exits 0/1/2 and every kind of failure (traceback,
internal error, stray output line, hang, crash, unexpected exit, partial output, peak RSS over
2 GB, injection), the slowest case and the highest peak RSS; exits 1 if any case failed.
Case N is the same on every machine, so a failure reproduces with
`python tests/fuzzing.py --lay-out N DIR`.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import fuzzing  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a.startswith("--cases") for a in args):
        args = ["--cases", "0:10000"] + args
    if not any(a.startswith("--results") for a in args):
        args += ["--results", "fuzz-results.jsonl"]
    sys.exit(fuzzing.main(args))
