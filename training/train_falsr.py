"""Train a FALSR network (×2) on ../shared/data/sr/train with the SESR data pipeline.

    nice -n 15 python -m training.train_falsr --variant C --until 01:45
    nice -n 15 python -m training.train_falsr --variant B --minutes 30

Speed (measured with this trainer's step on the 2-core AVX512-BF16 CPU, shared, 1 thread):
``--precision bf16`` (the default) runs the cells under bf16 autocast with the stem, global residual
and HR tail in FP32 (see ``FALSR.trunk_dtype``): 0.78-0.85 s/step against 1.57 s/step FP32 at batch
8×48². Its gradient's cosine to the FP32 gradient of the same batch is 0.85-0.97, while two batches'
FP32 gradients have cosines of -0.2 … 0.4: the rounding noise is small beside the sampling noise.
Full-network autocast (stem and tail in bf16 too) was rejected: cosines 0.43-0.78 and gradient norms
4-10× too large on the stem/fuse/out layers. The weights, the optimiser and the EMA stay FP32; the
``--anneal-minutes`` phase runs in FP32 (the last low-learning-rate steps are where precision
counts) and every evaluation is FP32. Two threads are slower than one while the CPU is shared
(2.5 s vs 1.2 s/step FP32); channels_last gained little (0.83 vs 1.1 s) and is not used; data
loading costs 0.7 ms/batch.

Data: ``training.sr_data`` (the same Y-channel LR/HR patch pairs as SESR, LR made by MATLAB-bicubic
``app.core.imresize`` exactly as the evaluation makes its LR images). Loss L1, Adam, cosine learning
rate over ``--schedule-steps``, an EMA copy of the weights (the one evaluated and exported).

The run resumes from ``~/.cache/cfr-studio/falsr/falsr_<v>_x<s>.pt`` when it exists (weights, EMA,
optimiser, step, the log), writes that checkpoint atomically every ``--save-minutes`` and on exit
(also on Ctrl-C / SIGTERM), so training accumulates over sessions. Every save also logs the EMA
model's Y PSNR on Set5 (monitoring only: no model is selected on it).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.falsr import build_falsr, macs_per_input_pixel

CKPT_DIR = Path(os.environ.get("CFR_FALSR_CACHE", Path.home() / ".cache" / "cfr-studio" / "falsr"))


def checkpoint_path(variant: str, scale: int = 2, ckpt_dir: Path = CKPT_DIR) -> Path:
    return Path(ckpt_dir) / f"falsr_{variant.lower()}_x{scale}.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_ema_model(variant: str, scale: int = 2, path: Path | None = None) -> tuple[torch.nn.Module, dict]:
    """The EMA weights of a checkpoint in an eval-mode FALSR, and the checkpoint's bookkeeping."""
    path = Path(path) if path else checkpoint_path(variant, scale)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no FALSR checkpoint (train with training.train_falsr first)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = build_falsr(state["variant"])
    model.load_state_dict(state["ema"])
    info = {k: state[k] for k in ("variant", "scale", "step", "seconds", "log", "args") if k in state}
    return model.eval(), info


def set5_psnr(model: torch.nn.Module, scale: int, data_dir: Path) -> float:
    """Mean Y PSNR on Set5 with a ``scale``-pixel border shave (a quick monitor, not the report)."""
    from app.core.io import load_image
    from training.sr_data import make_pair

    vals = []
    for p in sorted((Path(data_dir) / "sr" / "test" / "Set5").glob("*.png")):
        rgb = load_image(p).rgb
        lr, hr = make_pair(rgb, scale)
        with torch.no_grad():
            sr = model(torch.from_numpy(lr)[None, None]).numpy()[0, 0]
        sr = np.round(sr * 255.0)
        hr = np.round(hr * 255.0)
        d = (sr - hr)[scale:-scale, scale:-scale]
        vals.append(10 * math.log10(255.0**2 / max(float(np.mean(d * d)), 1e-10)))
    return float(np.mean(vals))


def lr_at(step: int, base: float, schedule_steps: int, warmup: int = 200, floor: float = 0.05) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, schedule_steps - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def parse_until(text: str) -> float:
    """'HH:MM' (UTC, today or tomorrow) → a time.time() deadline."""
    now = dt.datetime.now(dt.timezone.utc)
    hh, mm = (int(v) for v in text.split(":"))
    t = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if t <= now:
        t += dt.timedelta(days=1)
    return t.timestamp()


def main(argv: list[str] | None = None) -> int:
    from training.sr_data import DEFAULT_DATA, PatchSampler, prepare_pairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="C", choices=["A", "B", "C"])
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=48, help="LR patch side")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule-steps", type=int, default=200_000,
                    help="cosine length; the paper-scale budget, so a short run stays near the top")
    ap.add_argument("--warmup", type=int, default=50, help="steps of linear learning-rate warm-up")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    ap.add_argument("--until", default=None, help="stop at HH:MM UTC")
    ap.add_argument("--steps", type=int, default=None, help="stop at this total step count")
    ap.add_argument("--anneal-minutes", type=float, default=0.0,
                    help="in this many last minutes before --until/--minutes, ramp the learning rate "
                         "down linearly to 5 %% (a short run ends annealed; a resumed run starts high again)")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"],
                    help="cells under bf16 autocast (weights stay FP32); the anneal phase is always FP32")
    ap.add_argument("--save-minutes", type=float, default=15.0)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ckpt = args.checkpoint or checkpoint_path(args.variant, args.scale)
    deadline = math.inf
    if args.minutes is not None:
        deadline = time.time() + 60 * args.minutes
    if args.until:
        deadline = min(deadline, parse_until(args.until))

    model = build_falsr(args.variant)
    if model.scale != args.scale:
        raise SystemExit(f"FALSR-{args.variant} is a ×{model.scale} network")
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, seconds, log = 0, 0.0, []
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, seconds, log = state["step"], state["seconds"], state["log"]
        print(f"resumed {ckpt} at step {step} ({seconds / 3600:.2f} h trained)", flush=True)

    pairs = prepare_pairs(args.scale, args.data)
    sampler = PatchSampler(pairs, patch=args.patch, batch=args.batch, seed=args.seed + step)
    print(f"FALSR-{args.variant} ×{args.scale}: {sum(p.numel() for p in model.parameters()):,} params, "
          f"{macs_per_input_pixel(model):,.0f} MACs/LR px; {len(pairs.lr)} images, "
          f"batch {args.batch}×{args.patch}², {args.threads} thread(s)", flush=True)

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def save(tag: str) -> None:
        psnr = set5_psnr(ema, args.scale, args.data)
        entry = {"step": step, "hours": round(seconds / 3600, 3), "set5_psnr": round(psnr, 3),
                 "loss": round(float(np.mean(losses)) if losses else float("nan"), 5),
                 "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "tag": tag}
        log.append(entry)
        save_checkpoint(ckpt, {"variant": args.variant, "scale": args.scale, "model": model.state_dict(),
                               "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                               "seconds": seconds, "log": log, "args": vars(args) | {"data": str(args.data)}})
        print(json.dumps(entry), flush=True)

    def anneal() -> float:
        if args.anneal_minutes <= 0 or math.isinf(deadline):
            return 1.0
        left = (deadline - time.time()) / (60 * args.anneal_minutes)
        return 0.05 + 0.95 * min(1.0, max(0.0, left))

    losses: list[float] = []
    last_save = time.time()
    model.train()
    while not stop["flag"] and time.time() < deadline and (args.steps is None or step < args.steps):
        t0 = time.time()
        lr_b, hr_b = next(sampler)
        scale_lr = anneal()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.lr, args.schedule_steps, warmup=args.warmup) * scale_lr
        model.trunk_dtype = torch.bfloat16 if args.precision == "bf16" and scale_lr >= 1.0 else None
        loss = F.l1_loss(model(torch.from_numpy(lr_b)), torch.from_numpy(hr_b))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        # EMA with a short warm-up so an early checkpoint is not dominated by the random init
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        losses.append(loss.item())
        seconds += time.time() - t0
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses[-50:]):.5f} "
                  f"{(time.time() - t0):.2f} s/step lr {opt.param_groups[0]['lr']:.2e} "
                  f"{'bf16' if model.trunk_dtype else 'fp32'}", flush=True)
        if time.time() - last_save > 60 * args.save_minutes:
            save("periodic")
            losses.clear()
            last_save = time.time()
    save("final")
    return 0


if __name__ == "__main__":
    sys.exit(main())
