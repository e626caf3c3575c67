"""Time one SESR training step (collapsed training, batch of LR patches, L1, forward + backward +
Adam) in the ways training/train_sesr.py could run it, interleaved so that a shared machine's
load falls on all of them alike.

    nice -n 10 python benchmarks/bench_sesr_train.py                 # M5 x2, batch 32 of 64x64
    nice -n 10 python benchmarks/bench_sesr_train.py --rounds 5 --variant M11

Ways: FP32 or bf16 autocast; 1 intra-op thread, 2 OpenMP threads, or 2 Python threads each
running half the batch on 1 intra-op thread. Also times the patch sampler alone. Prints the median
and min–max ms per step of each, and the machine. The trainer's defaults (1 thread, bf16 for the
first 85 % of the budget) come from this table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from machine_info import cpu_model, load_average  # noqa: E402
from training.sesr import build_sesr  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="M5")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per way per round")
    args = ap.parse_args(argv)

    net = build_sesr(args.variant, args.scale)
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    s, p, b = args.scale, args.patch, args.batch
    x, y = torch.rand(b, 1, p, p), torch.rand(b, 1, p * s, p * s)

    def half(xx, yy, bf16, weight):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(xx)
        ((out.float() - yy).abs().mean() * weight).backward()

    def step(bf16: bool, how: str):
        opt.zero_grad(set_to_none=True)
        if how == "2 Python threads":
            torch.set_num_threads(1)
            k = b // 2
            ts = [threading.Thread(target=half, args=(x[i * k:(i + 1) * k], y[i * k:(i + 1) * k], bf16, 0.5))
                  for i in range(2)]
            [t.start() for t in ts]
            [t.join() for t in ts]
        else:
            torch.set_num_threads(2 if how == "2 OpenMP threads" else 1)
            half(x, y, bf16, 1.0)
        opt.step()

    ways = [(bf16, how) for how in ("1 thread", "2 OpenMP threads", "2 Python threads") for bf16 in (False, True)]
    times = {w: [] for w in ways}
    for _ in range(args.rounds):
        for w in ways:
            step(*w)  # warm-up (and thread-pool resize)
            for _ in range(args.steps):
                t = time.perf_counter()
                step(*w)
                times[w].append((time.perf_counter() - t) * 1e3)

    sampler_ms = None
    try:
        from training.sr_data import PatchSampler, prepare_pairs
        sampler = PatchSampler(prepare_pairs(args.scale), p, b)
        t = time.perf_counter()
        for _ in range(20):
            next(sampler)
        sampler_ms = (time.perf_counter() - t) / 20 * 1e3
    except Exception as exc:  # the data may be absent on another machine
        print(f"(patch sampler not timed: {exc})")

    print(f"{cpu_model()}, {os.cpu_count()} CPUs, load average {load_average():.1f}, torch {torch.__version__}")
    print(f"SESR-{args.variant} x{s}, batch {b} of {p}x{p} LR patches, {args.rounds} rounds x {args.steps} steps\n")
    print("| precision | threads | median ms/step | min–max | steps/min (median) |")
    print("|---|---|---|---|---|")
    for (bf16, how), ts in times.items():
        med = statistics.median(ts)
        print(f"| {'bf16 autocast' if bf16 else 'FP32'} | {how} | {med:.0f} | {min(ts):.0f}–{max(ts):.0f} | "
              f"{60000 / med:.0f} |")
    if sampler_ms is not None:
        print(f"\npatch sampler alone: {sampler_ms:.1f} ms per batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
