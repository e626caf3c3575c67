"""Blend two CFRNet weight files linearly: w = (1 − α)·A + α·B (network interpolation).

    python -m training.blend_weights A.fp16.pt B.fp16.pt --alpha 0.5 --out blend.fp16.pt

A and B must be the same network fine-tuned from one starting point (e.g. two release branches of
the standing run, one aimed at PSNR, one at LPIPS): between two such solutions the loss is nearly
convex, so a blend trades the two aims off smoothly instead of averaging two unrelated nets. Each
input is a weights file or a training checkpoint (its EMA; ``train_cfrnet.load_weights``). The
output is an fp16 weights file like ``best_ema.fp16.pt`` whose info names both sources and α, so
``export_cfrnet --weights`` takes it and the model card can say what was shipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from training.cfrnet import build
from training.train_cfrnet import load_weights, save_weights_fp16


def blend(a: torch.nn.Module, b: torch.nn.Module, alpha: float) -> torch.nn.Module:
    """A new model with (1 − alpha)·a + alpha·b in every parameter and buffer; a and b unchanged."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}")
    if a.config != b.config:
        raise ValueError(f"different networks: {a.config} vs {b.config}")
    sa, sb = a.state_dict(), b.state_dict()
    out = build(a.config)
    out.load_state_dict({k: torch.lerp(sa[k].float(), sb[k].float(), alpha) for k in sa})
    return out.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--alpha", type=float, required=True, help="share of B, 0…1")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    net_a, info_a = load_weights(a.a)
    net_b, info_b = load_weights(a.b)
    try:
        net = blend(net_a, net_b, a.alpha)
    except ValueError as e:
        print(f"{a.a} + {a.b}: {e}", file=sys.stderr)
        return 2
    step = max(int(info_a.get("step", 0)), int(info_b.get("step", 0)))
    hours = max(float(info_a.get("train_hours", 0.0)), float(info_b.get("train_hours", 0.0)))
    info = {"step": step, "train_hours": hours, "mode": info_a.get("mode"),
            "blend": {"alpha": a.alpha, "a": str(a.a), "b": str(a.b),
                      "a_step": info_a.get("step"), "b_step": info_b.get("step")}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights_fp16(net, a.out, info)
    print(f"{a.out}: (1 − {a.alpha})·{a.a} (step {info_a.get('step')}) + {a.alpha}·{a.b} "
          f"(step {info_b.get('step')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
