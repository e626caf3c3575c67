"""Seconds per CFRNet training step on this CPU, by recipe: single-cycle L1, + LPIPS, CCFP K = 2
and K = 3 (with idempotence and re-degradation). Prints a table (median and spread of --rounds
steps after --warmup) with the machine and its load average: the machine is shared, so compare
rows of one run rather than runs.

    python benchmarks/bench_cfrnet_train.py [--threads 2] [--batch 8] [--crop 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from training.cfrnet import build, count_macs, count_params
from training.degrade import degrade
from training.losses import RestorationLoss
from training.train_cfrnet import step_loss, to_tensor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    clean = (rng.random((a.batch, a.crop, a.crop, 3)) * 255).astype(np.uint8)
    y = to_tensor(clean)
    x = to_tensor(np.stack([degrade(c, rng) for c in clean]))

    def deg(u8):
        return np.stack([degrade(c, rng) for c in u8])

    net = build()
    print(f"CFRNet {count_params(net):,} params, {count_macs(net) / 1e9:.2f} GMAC/cycle@256²; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{a.threads} threads, batch {a.batch} of {a.crop}², load average {os.getloadavg()[0]:.1f}")
    print("| recipe | s/step median | min | max |")
    print("| --- | --- | --- | --- |")
    for label, lpips_w, k, redeg in (("L1, K=1", 0.0, 1, False), ("L1+0.1 LPIPS, K=1", 0.1, 1, False),
                                     ("CCFP K=2 (+idem, +redeg every 2nd)", 0.1, 2, None),
                                     ("CCFP K=3 (+idem, +redeg every 2nd)", 0.1, 3, None)):
        crit = RestorationLoss(lpips_w)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        times = []
        for i in range(a.warmup + a.rounds):
            t = time.perf_counter()
            loss, _ = step_loss(net, crit, x, y, k, (i % 2 == 0) if redeg is None else redeg, deg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        print(f"| {label} | {np.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
