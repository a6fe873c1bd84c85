"""What the Python benchmark drivers share: a command timed with its peak RSS, tools
measured in interleaved rounds, the median."""

import os
import re
import subprocess
import sys
import time


def timed(cmd, env=None, cwd=None):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS in MiB, stdout)."""
    started = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "RSS %M"] + cmd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, cwd=cwd)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    rss = int(re.findall(r"RSS (\d+)", out.stderr)[-1]) / 1024
    return seconds, rss, out.stdout


def rounds(tools, count):
    """Runs each tool (name → function returning (seconds, rss, …)) once a round, in
    turn, `count` rounds; returns name → [(seconds, rss)]."""
    results = {name: [] for name in tools}
    for round_ in range(count):
        for name, fn in tools.items():
            seconds, rss, *_ = fn()
            results[name].append((seconds, rss))
            print(f"round {round_ + 1}: {name}: {seconds:.1f} s, {rss:.0f} MiB", flush=True)
    return results


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
