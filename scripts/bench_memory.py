"""Benchmark memory over time: `bunsync serve` under a steady webhook load with the sandbox as Bunjang.

Usage: .venv/bin/python scripts/bench_memory.py [--rate R] [--seconds S] [--quick]
(defaults: 500 webhooks/s for 600 s; --quick: 40 s; scripts/bench.py runs it).

On a throwaway cluster (fsync on), ``bunsync sandbox --orders N`` (frozen clock) is Bunjang and
``bunsync serve`` runs with every role (HTTP, projectors, fetch workers, scheduler) and default
settings, loaded with R signed webhooks/s cycling over the sandbox's orders (each with a fresh eventId,
so each is logged and fetched; scripts/benchload.py). Every 10 s the RSS and open file descriptors of
the serve process and its children are sampled and printed as a series.

Verdict: growth of the last sample over the first one taken after the warm-up (60 s; in --quick 20 s)
< 10 %, for RSS and for fds. A 40 s run shows a trend, not a plateau: its verdict is indicative only.
The last line, ``BENCH_MEMORY {json}``, is for scripts/bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import benchlib

benchlib.reexec_in_venv(__file__)

import benchload  # noqa: E402

SAMPLE_S = 10


async def soak(
    stack: benchload.Stack, rate: int, seconds: int
) -> tuple[list[tuple[int, int, int]], benchload.Load]:
    """Run the load while sampling (seconds since start, RSS kB, fds) every SAMPLE_S seconds."""
    samples: list[tuple[int, int, int]] = []
    start = time.monotonic()

    async def sample() -> None:
        for k in range(seconds // SAMPLE_S + 1):
            await asyncio.sleep(max(0.0, start + k * SAMPLE_S - time.monotonic()))
            rss, fds = benchload.tree_usage(stack.serve.pid)
            samples.append((k * SAMPLE_S, rss, fds))
            print(f"  t={k * SAMPLE_S:>4} s  RSS {rss / 1024:7.1f} MB  fds {fds:>4}", flush=True)

    sampler = asyncio.create_task(sample())
    load = await benchload.steady_load(stack.port, stack.items, rate, seconds, connections=64, prefix="soak")
    await sampler
    return samples, load


def growth(samples: list[tuple[int, int, int]], warmup_s: int, column: int) -> float:
    """Relative growth of the last sample over the first at or after ``warmup_s``."""
    after = [s for s in samples if s[0] >= warmup_s] or samples[-1:]
    return (after[-1][column] - after[0][column]) / after[0][column] if after[0][column] else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=500, help="webhooks/s (500)")
    parser.add_argument("--seconds", type=int, help="duration (600; quick: 40)")
    parser.add_argument(
        "--orders", type=int, default=5000, help="sandbox orders the webhooks cycle over (5000)"
    )
    parser.add_argument("--quick", action="store_true", help="40 s, indicative only")
    args = parser.parse_args()
    seconds = args.seconds or (40 if args.quick else 600)
    warmup = 60 if seconds > 120 else 20
    try:
        with benchload.sandbox_and_serve(args.orders, [], "memory") as stack:
            print(
                f"bench_memory: {args.rate} webhooks/s for {seconds} s, `bunsync serve` (all roles)",
                flush=True,
            )
            samples, load = asyncio.run(soak(stack, args.rate, seconds))
    except benchlib.BenchError as exc:
        print(f"bench_memory: {exc}", file=sys.stderr)
        return 1
    rss_growth, fd_growth = growth(samples, warmup, 1), growth(samples, warmup, 2)
    ok = rss_growth < 0.10 and fd_growth < 0.10 and not load.non_2xx and not load.errors
    indicative = seconds < 600
    result = {
        "rate": args.rate,
        "seconds": seconds,
        "warmup_s": warmup,
        "sent": len(load.answers),
        "achieved_per_s": round(len(load.answers) / load.seconds, 1),
        "non_2xx": load.non_2xx,
        "errors": load.errors,
        "series": [{"t": t, "rss_mb": round(rss / 1024, 1), "fds": fds} for t, rss, fds in samples],
        "rss_growth": round(rss_growth, 4),
        "fd_growth": round(fd_growth, 4),
        "indicative": indicative,
    }
    print(
        f"sent {result['sent']:,} ({result['achieved_per_s']}/s achieved), non-2xx {load.non_2xx}, "
        f"socket errors {load.errors}; growth after {warmup} s: RSS {rss_growth:+.1%}, fds {fd_growth:+.1%} "
        f"(target < 10 %): {'PASS' if ok else 'FAIL'}{' (indicative only: short run)' if indicative else ''}"
    )
    print("BENCH_MEMORY " + json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
