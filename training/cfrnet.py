"""CFRNet: the face restoration network (one cycle = one call).

A multi-scale residual CNN (U-Net-like) with most of its ~2 M parameters at 1/8 resolution, where
parameters cost few MACs (DESIGN §11): at 256×256 a cycle is ~3.6 GMAC instead of the ~8.5 GMAC
of a 1/4-resolution trunk of the same size, so it trains and runs about twice as fast.

    256² ─unshuffle 2→ 12@128² ─conv→ 32 ─block─┐ (skip)
        ─unshuffle 2→ 128@64² ─conv→ 64 ─block─┐ (skip)
        ─unshuffle 2→ 256@32² ─conv→ 128 ─blocks×n─ conv→ 256 ─shuffle→ 64@64² (+skip) ─block
        ─conv→ 128 ─shuffle→ 32@128² (+skip) ─block ─conv→ 12 ─shuffle→ 3@256²  (+ input)

Only NPU-friendly operators: Conv, ReLU, Add, SpaceToDepth/DepthToSpace (pixel (un)shuffle).
No normalisation layers. Global residual: output = input + r(input); the final conv starts at zero,
so an untrained net is the identity, a fixed point of every cycle count; the residual branches of
the blocks start small (their second conv is scaled down), which keeps a deep net without
normalisation trainable. No clamp inside the net: the app clamps to [0, 1] after each cycle.
"""

from __future__ import annotations

import torch
from torch import nn


class _SpaceToDepthOp(torch.autograd.Function):
    """Only used while exporting: emits one ONNX SpaceToDepth node."""

    @staticmethod
    def forward(ctx, x):  # pragma: no cover - replaced by the symbolic during export
        return SpaceToDepth.reorder(x)

    @staticmethod
    def symbolic(g, x):
        return g.op("SpaceToDepth", x, blocksize_i=2)


class SpaceToDepth(nn.Module):
    """Pixel-unshuffle by 2 in ONNX's SpaceToDepth channel order (block offset outer, channel
    inner), so the exported graph holds one SpaceToDepth node instead of reshapes and transposes."""

    @staticmethod
    def reorder(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(n, 4 * c, h // 2, w // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _SpaceToDepthOp.apply(x)
        return self.reorder(x)


class ResBlock(nn.Module):
    def __init__(self, ch: int, init_scale: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        with torch.no_grad():
            self.conv2.weight.mul_(init_scale)
            self.conv2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class CFRNet(nn.Module):
    """Channels (c1, c2, c3) at 1/2, 1/4, 1/8 resolution; ``n_deep`` residual blocks at 1/8."""

    def __init__(self, c1: int = 32, c2: int = 64, c3: int = 128, n_deep: int = 4,
                 n_mid: int = 1, n_shallow: int = 1):
        super().__init__()
        self.config = dict(c1=c1, c2=c2, c3=c3, n_deep=n_deep, n_mid=n_mid, n_shallow=n_shallow)
        act = nn.ReLU(inplace=True)
        self.down = SpaceToDepth()
        self.up = nn.PixelShuffle(2)
        self.head = nn.Sequential(nn.Conv2d(12, c1, 3, padding=1), act)
        self.enc1 = nn.Sequential(*[ResBlock(c1) for _ in range(n_shallow)])
        self.to2 = nn.Sequential(nn.Conv2d(4 * c1, c2, 3, padding=1), act)
        self.enc2 = nn.Sequential(*[ResBlock(c2) for _ in range(n_mid)])
        self.to3 = nn.Sequential(nn.Conv2d(4 * c2, c3, 3, padding=1), act)
        self.deep = nn.Sequential(*[ResBlock(c3) for _ in range(n_deep)])
        self.from3 = nn.Conv2d(c3, 4 * c2, 3, padding=1)
        self.dec2 = nn.Sequential(*[ResBlock(c2) for _ in range(n_mid)])
        self.from2 = nn.Conv2d(c2, 4 * c1, 3, padding=1)
        self.dec1 = nn.Sequential(*[ResBlock(c1) for _ in range(n_shallow)])
        self.tail = nn.Conv2d(c1, 12, 3, padding=1)
        with torch.no_grad():  # start as the identity map
            self.tail.weight.zero_()
            self.tail.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(self.head(self.down(x)))          # 1/2
        s2 = self.enc2(self.to2(self.down(s1)))          # 1/4
        d = self.deep(self.to3(self.down(s2)))           # 1/8
        d2 = self.dec2(self.up(self.from3(d)) + s2)      # 1/4
        d1 = self.dec1(self.up(self.from2(d2)) + s1)     # 1/2
        return x + self.up(self.tail(d1))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = 256) -> int:
    """Multiply-accumulates of the convolutions for one N=1 ``size``² cycle (hooks on Conv2d)."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs += out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return macs


def build(config: dict | None = None) -> CFRNet:
    return CFRNet(**(config or {}))


if __name__ == "__main__":
    m = build()
    print(f"params {count_params(m):,}  MACs/cycle@256² {count_macs(m) / 1e9:.2f} G")
