"""Training losses: pixel L1, a differentiable LPIPS-AlexNet, and the three CCFP terms.

LPIPS: the weights are read from the named initialisers of ../shared/data/metrics/lpips_alex.onnx
(the project's one copy of LPIPS; no download) into a torch AlexNet with the same layers, so the
loss is the metric the evaluation reports. Its parameters are frozen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_LPIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "metrics" / "lpips_alex.onnx"

# (initialiser prefix, stride, padding, max-pool before the conv)
_CONVS = [("m.net.slice1.0", 4, 2, False), ("m.net.slice2.3", 1, 2, True),
          ("m.net.slice3.6", 1, 1, True), ("m.net.slice4.8", 1, 1, False),
          ("m.net.slice5.10", 1, 1, False)]


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone; inputs in [0, 1] (converted to [-1, 1] inside)."""

    def __init__(self, onnx_path: str | Path = DEFAULT_LPIPS):
        super().__init__()
        import onnx
        from onnx import numpy_helper

        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS weights not found: {path}")
        w = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
        t = lambda name: torch.from_numpy(np.array(w[name], dtype=np.float32))  # noqa: E731
        self.register_buffer("shift", t("m.scaling_layer.shift"))
        self.register_buffer("scale", t("m.scaling_layer.scale"))
        self.convs = nn.ModuleList()
        self.cfg = []
        for name, stride, pad, pool in _CONVS:
            wt = t(name + ".weight")
            conv = nn.Conv2d(wt.shape[1], wt.shape[0], wt.shape[2], stride=stride, padding=pad)
            conv.weight.data.copy_(wt)
            conv.bias.data.copy_(t(name + ".bias"))
            self.convs.append(conv)
            self.cfg.append(pool)
        self.lins = nn.ParameterList([nn.Parameter(t(f"m.lin{i}.model.1.weight"), requires_grad=False)
                                      for i in range(5)])
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def features(self, x01: torch.Tensor) -> list[torch.Tensor]:
        h = ((x01 * 2 - 1) - self.shift) / self.scale
        feats = []
        for conv, pool in zip(self.convs, self.cfg):
            if pool:
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(conv(h))
            feats.append(h)
        return feats

    def forward(self, a: torch.Tensor, b: torch.Tensor, b_feats=None) -> torch.Tensor:
        """Per-sample distance (N,). ``b_feats`` lets a fixed target's features be reused."""
        fa = self.features(a)
        fb = b_feats if b_feats is not None else self.features(b)
        d = 0
        for lin, x, y in zip(self.lins, fa, fb):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = d + F.conv2d((x - y) ** 2, lin).mean((2, 3))
        return d.flatten()


def periodic_pattern_power(e: torch.Tensor, period: int = 8) -> torch.Tensor:
    """Per sample (N,), the mean square of the error's period-``period`` pattern, in [0, 1]
    units: the differentiable twin of ``app.core.metrics.periodic_grid`` (which reports
    255·√ of this). The loss takes the square, not the RMS: on a 128² crop the phase means carry
    noise as large as the pattern, and the square's gradient is unbiased by it."""
    n, c, h, w = e.shape
    e = e[:, :, : h - h % period, : w - w % period]
    phases = e.reshape(n, c, h // period, period, w // period, period).mean((2, 4))
    return ((phases - phases.mean((2, 3), keepdim=True)) ** 2).mean((1, 2, 3))


def rmse_per_sample(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each sample's RMSE. Minimising it minimises each face's MSE, i.e.
    maximises the PSNR the evaluation reports, while its gradient keeps L1's scale (unit-norm
    per sample), so the λ/μ of the other terms keep their meaning when a run switches to it."""
    return ((pred - y) ** 2).flatten(1).mean(1).add(1e-8).sqrt().mean()


PIXEL_LOSSES = {"l1": F.l1_loss, "rmse": rmse_per_sample}


class RestorationLoss(nn.Module):
    """ℓ = pixel + λ·LPIPS (+ μ·periodic_pattern_power) against a clean target, pixel = L1 or
    ``rmse_per_sample`` (a PSNR-directed fine-tune); the target's LPIPS
    features are computed once. μ charges the period-8 dot grids and hatching that a
    pixel-shuffle network drifts towards under LPIPS (LPIPS-AlexNet rewards them, L1 hardly sees
    them). A period-4 penalty alone moved the pattern to period 8 (session 4)."""

    def __init__(self, lpips_weight: float = 0.1, lpips_path: str | Path = DEFAULT_LPIPS,
                 grid_weight: float = 0.0, pixel: str = "l1", lpips_needed: bool = False):
        super().__init__()
        if pixel not in PIXEL_LOSSES:
            raise ValueError(f"pixel loss {pixel!r}: expected one of {sorted(PIXEL_LOSSES)}")
        self.lpips_weight = lpips_weight
        self.grid_weight = grid_weight
        self.pixel = PIXEL_LOSSES[pixel]
        # lpips_needed: a later cycle uses LPIPS (its own λ) though this λ is 0
        self.lpips = LPIPSAlex(lpips_path) if lpips_weight > 0 or lpips_needed else None

    def target_features(self, y: torch.Tensor):
        if self.lpips is None:
            return None
        with torch.no_grad():
            return self.lpips.features(y)

    def forward(self, pred: torch.Tensor, y: torch.Tensor, y_feats=None, lpips_weight: float | None = None) -> torch.Tensor:
        """``lpips_weight`` overrides λ for this call (e.g. a later cycle's)."""
        loss = self.pixel(pred, y)
        weight = self.lpips_weight if lpips_weight is None else lpips_weight
        if self.lpips is not None and weight > 0:
            loss = loss + weight * self.lpips(pred, y, y_feats).mean()
        if self.grid_weight > 0:
            loss = loss + self.grid_weight * periodic_pattern_power(pred - y).mean()
        return loss


def idempotence_loss(f_x: torch.Tensor, f_f_x: torch.Tensor) -> torch.Tensor:
    """‖f(f(x)) − f(x)‖₁: a restored face should be a fixed point of f."""
    return F.l1_loss(f_f_x, f_x)


def cycle_weights(k: int) -> list[float]:
    """Weights w_j of the multi-cycle supervision Σ w_j ℓ(f^j(x), y): later cycles a little more,
    normalised to sum to 1, so the loss scale does not jump when K grows."""
    w = np.arange(1, k + 1, dtype=np.float64)
    return list(w / w.sum())
