"""Train SESR on the 291-style set (T91 + BSD200 subset), the paper's way on a small CPU budget.

    nice -n 10 python -m training.train_sesr --variant M5 --scale 2 --minutes 50
    nice -n 10 python -m training.train_sesr --variant M5 --scale 4 --minutes 40 \
        --init ~/.cache/cfr-studio/sesr/sesr_m5_x2.pt

The shipped M5 x2 is the first command (with --minutes 45) continued by a warm restart (80 min, a separate
checkpoint ``sesr_m5_x2_c2.pt``; fresh Adam, 200-step warm-up, lower peak learning rate):

    nice -n 10 python -m training.train_sesr --variant M5 --scale 2 --run c2 \
        --init ~/.cache/cfr-studio/sesr/sesr_m5_x2.pt --lr 5e-4 --lr-min 1e-5 --warmup-steps 200 --minutes 80
    nice -n 10 python -m training.export_sesr --variant M5 --scale 2 --ckpt ~/.cache/cfr-studio/sesr/sesr_m5_x2_c2.pt

The paper's recipe (DIV2K, 64×64 LR patches, L1, Adam, batch 32, ×4 initialised from ×2) with a
wall-clock budget instead of 300 epochs: the learning rate follows a cosine over ``--minutes``
(accumulated across resumes), and an EMA copy of the weights is kept for evaluation and export.
Training runs collapsed (each step builds the k×k kernels from the expanded weights and convolves
once; see training/sesr.py), under bf16 autocast for the first ``--bf16-until`` of the budget
(1.7x faster here) and FP32 after; one intra-op thread (benchmarks/bench_sesr_train.py: two
OpenMP threads are slower on the shared 2-core machine). Checkpoints (model, EMA, optimiser, clock) go to
``~/.cache/cfr-studio/sesr/sesr_<variant>_x<scale>.pt`` every few minutes; re-running the same
command resumes from it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from training.sesr import build_sesr
from training.sr_data import CACHE_DIR, DEFAULT_DATA, PatchSampler, prepare_pairs


def checkpoint_path(variant: str, scale: int, out_dir: Path = CACHE_DIR, run: str = "") -> Path:
    return Path(out_dir) / f"sesr_{variant.lower()}_x{scale}{'_' + run if run else ''}.pt"


def load_model(path: Path, use_ema: bool = True) -> torch.nn.Module:
    """The trained (expanded) SESR from a checkpoint, EMA weights by default."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = build_sesr(ck["variant"], ck["scale"], activation=ck.get("activation", "prelu"))
    net.load_state_dict(ck["ema" if use_ema and "ema" in ck else "model"])
    return net.eval()


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _init_from(net: torch.nn.Module, path: Path) -> tuple[list[str], dict]:
    """Copy every tensor whose name and shape match (×2 → ×4: all but the output block)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    src = ck.get("ema", ck.get("model"))
    own = net.state_dict()
    taken = [k for k, v in src.items() if k in own and own[k].shape == v.shape]
    own.update({k: src[k] for k in taken})
    net.load_state_dict(own)
    return taken, {"path": Path(path).name, "scale": ck["scale"], "step": ck["step"], "elapsed": ck["elapsed"]}


def _quick_eval(net: torch.nn.Module, scale: int, data_dir: Path):
    """Set5 and Set14 Y-PSNR by the shared protocol (training/sr_eval.py), when it is there."""
    try:
        from training import sr_eval  # the metrics helper's protocol
        from training.export_sesr import evaluate_torch_model
        return evaluate_torch_model(net, scale, ("Set5", "Set14"), data_dir)
    except Exception as exc:  # monitoring only: never stop training for it
        return f"not evaluated: {exc!r}"[:200]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="M5")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--activation", default="prelu", choices=("prelu", "relu"))
    ap.add_argument("--minutes", type=float, default=50.0, help="total training budget (wall clock)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=64, help="LR patch side")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=2e-5)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--warmup-steps", type=int, default=0,
                    help="linear learning-rate warm-up (useful with --init: a fresh Adam state)")
    ap.add_argument("--bf16-until", type=float, default=0.85,
                    help="run forward/backward under bfloat16 autocast for this fraction of the budget, "
                         "then FP32 (1.7x faster steps on an AVX512-BF16 CPU; the FP32 tail removes "
                         "bf16's rounding from the final weights); 0 = FP32 throughout")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads; 1 gives the most steps/min on the shared 2-core machine")
    ap.add_argument("--run", default="", help="suffix of the checkpoint name (a separate run)")
    ap.add_argument("--init", type=Path, help="checkpoint to initialise from (e.g. the ×2 model for ×4)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=CACHE_DIR)
    ap.add_argument("--save-every-min", type=float, default=3.0)
    ap.add_argument("--eval-every-min", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_path(args.variant, args.scale, args.out, args.run)
    log_path = ckpt.with_suffix(".log.jsonl")

    net = build_sesr(args.variant, args.scale, activation=args.activation)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    step, elapsed, init_record = 0, 0.0, None
    bf16_ok = args.bf16_until > 0 and torch.backends.mkldnn.is_available()
    if ckpt.is_file():
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, init_record = ck["step"], ck["elapsed"], ck.get("init")
        print(f"resumed {ckpt} at step {step}, {elapsed / 60:.1f} min trained", flush=True)
    elif args.init:
        taken, init_record = _init_from(net, args.init)
        ema.load_state_dict(net.state_dict())
        print(f"initialised {len(taken)} tensors from {args.init}", flush=True)

    pairs = prepare_pairs(args.scale, args.data, args.out)
    sampler = PatchSampler(pairs, args.patch, args.batch, seed=args.seed + step)
    print(f"{len(pairs.lr)} training images ({pairs.lr_pixels / 1e6:.2f} M LR pixels), "
          f"{sum(p.numel() for p in net.parameters())} expanded parameters", flush=True)

    def state() -> dict:
        return {"model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "step": step, "elapsed": elapsed, "variant": args.variant.upper(), "scale": args.scale,
                "activation": args.activation, "init": init_record, "args": {k: str(v) for k, v in vars(args).items()}}

    budget = args.minutes * 60.0
    t_last = time.time()
    last_save, last_eval, losses = elapsed, elapsed, []
    net.train()
    while elapsed < budget:
        frac = elapsed / budget
        warm = min(1.0, (step + 1) / args.warmup_steps) if args.warmup_steps else 1.0
        for g in opt.param_groups:
            g["lr"] = warm * (args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * frac)))
        lr_b, hr_b = next(sampler)
        # bf16 autocast for the convolutions (the network is conv-bound); loss and weights stay FP32
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_ok and frac < args.bf16_until):
            out = net(torch.from_numpy(lr_b))
        loss = (out.float() - torch.from_numpy(hr_b)).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            # warm-up: early on the average must not be dominated by the random initialisation
            decay = min(args.ema, (1.0 + step) / (10.0 + step))
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn, 1.0 - decay)
        losses.append(loss.item())
        step += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if elapsed - last_save >= args.save_every_min * 60 or elapsed >= budget:
            _save(ckpt, state())
            last_save = elapsed
            record = {"step": step, "min": round(elapsed / 60, 2), "lr": opt.param_groups[0]["lr"],
                      "bf16": bool(bf16_ok and elapsed / budget < args.bf16_until),
                      "l1": float(np.mean(losses))}
            losses = []
            if elapsed - last_eval >= args.eval_every_min * 60 or elapsed >= budget:
                last_eval = elapsed
                record["eval_ema"] = _quick_eval(ema.eval(), args.scale, args.data)
                t_last = time.time()  # evaluation time is not training time
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    _save(ckpt, state())
    print(f"done: {step} steps, {elapsed / 60:.1f} min; checkpoint {ckpt}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
