"""What the Python benchmark drivers share: a command timed with its peak RSS, tools
measured in interleaved rounds, the median."""

import os
import re
import subprocess
import sys
import time


def timed(cmd, env=None, cwd=None):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS in MiB, stdout)."""
    return timed_cpu(cmd, env, cwd)[:3]


def timed_cpu(cmd, env=None, cwd=None):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS in MiB, stdout, CPU seconds:
    user + system, its children's included)."""
    started = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "RSS %M CPU %U %S"] + cmd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, cwd=cwd)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    rss, user, system = re.findall(r"RSS (\d+) CPU ([\d.]+) ([\d.]+)", out.stderr)[-1]
    return seconds, int(rss) / 1024, out.stdout, float(user) + float(system)


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
