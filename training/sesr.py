"""SESR (Bhardwaj et al., Arm, arXiv 2103.09404): super-resolution with collapsible linear blocks.

A *linear block* is a k×k conv from ``c_in`` to ``p`` channels followed by a 1×1 conv to ``c_out``,
with nothing non-linear between, so it equals a single k×k conv c_in → c_out whose kernel is
``W[o, i] = Σ_q W1x1[o, q] · Wkxk[q, i]``. When c_in == c_out the block's short residual
``block(x) + x`` is that conv with 1 added at the centre tap of each ``W[o, o]``.

The network (Y channel in [0, 1]; ``s`` the scale, ``f`` features, ``m`` body blocks):

    x0 = input_block_5×5(y − 0.5)                       1 → f
    h  = x0;  for each of m body blocks: h = act(block_3×3(h) + h)     f → f, act = PReLU (or ReLU)
    h  = h + x0                                          long residual over the body
    z  = output_block_5×5(h) + y (broadcast)             f → s²
    out = clip(depth_to_space(z), 0, 1)                  twice depth_to_space(2) for ×4

Training is "collapsed" (the paper's efficient training): each step computes the collapsed k×k
kernel from the expanded weights (a small einsum) and convolves once, so the p = 256 expansion
costs almost nothing per step while the optimiser still sees the over-parameterised weights.
``SESR.forward_expanded`` runs the same weights the slow way (k×k to p channels, 1×1 back, add the
residual): the reference the test checks the collapse against. ``SESR.collapse()`` returns
``CollapsedSESR``, plain Conv2d layers, which is what is exported to ONNX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VARIANTS", "LinearBlock", "SESR", "CollapsedSESR", "build_sesr", "sesr_macs_per_pixel"]

# variant → (f, m); p (the expansion width) is 256 for all of them, as in the paper
VARIANTS = {"M3": (16, 3), "M5": (16, 5), "M7": (16, 7), "M11": (16, 11), "XL": (32, 11)}


def sesr_macs_per_pixel(f: int, m: int, scale: int) -> int:
    """MACs per LR input pixel of the collapsed network (convs only, no bias; as the paper counts:
    PReLU, the residual adds and depth-to-space are ignored). Equals the collapsed weight count."""
    return 5 * 5 * 1 * f + m * 3 * 3 * f * f + 5 * 5 * f * scale * scale


class LinearBlock(nn.Module):
    """k×k conv c_in → p, then 1×1 conv p → c_out (no bias, no activation), optionally plus the
    identity (``residual=True``, needs c_in == c_out). Runs collapsed by default."""

    def __init__(self, c_in: int, c_out: int, kernel: int, p: int = 256, residual: bool = False):
        super().__init__()
        if residual and c_in != c_out:
            raise ValueError("a short residual needs as many input as output channels")
        self.c_in, self.c_out, self.kernel, self.p, self.residual = c_in, c_out, kernel, p, residual
        self.expand = nn.Parameter(torch.empty(p, c_in, kernel, kernel))  # k×k, c_in → p
        self.project = nn.Parameter(torch.empty(c_out, p))  # 1×1, p → c_out
        # the default Conv2d initialisation of both convs (Kaiming-uniform, a = √5)
        nn.init.kaiming_uniform_(self.expand, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.project, a=math.sqrt(5))
        if residual:
            eye = torch.zeros(c_out, c_in, kernel, kernel)
            eye[torch.arange(c_out), torch.arange(c_in), kernel // 2, kernel // 2] = 1.0
            self.register_buffer("identity", eye, persistent=False)

    def collapsed_weight(self) -> torch.Tensor:
        """The single c_out × c_in × k × k kernel this block equals (residual folded in)."""
        w = torch.einsum("oq,qikl->oikl", self.project, self.expand)
        if self.residual:
            w = w + self.identity
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.collapsed_weight(), padding=self.kernel // 2)

    def forward_expanded(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, self.expand, padding=self.kernel // 2)
        y = F.conv2d(h, self.project[:, :, None, None])
        return y + x if self.residual else y


class TrainPReLU(nn.PReLU):
    """PReLU as ``relu(x) − a·relu(−x)``: the same function and parameter (``weight``), but its
    backward is two cheap elementwise passes where torch's fused PReLU kernel reduces the slope's
    gradient slowly (it took ~30 % of a collapsed training step on this CPU, half that this way)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) - self.weight.to(x.dtype).view(1, -1, 1, 1) * F.relu(-x)


def _depth_to_space(z: torch.Tensor, scale: int) -> torch.Tensor:
    # ×4 is depth-to-space(2) twice, as in the paper (it maps to the NPU's operator)
    for _ in range(int(round(math.log2(scale)))):
        z = F.pixel_shuffle(z, 2)
    return z


class SESR(nn.Module):
    def __init__(self, scale: int = 2, f: int = 16, m: int = 5, p: int = 256, activation: str = "prelu"):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError("scale must be 2 or 4")
        if activation not in ("prelu", "relu"):
            raise ValueError("activation must be 'prelu' or 'relu'")
        self.scale, self.f, self.m, self.p, self.activation = scale, f, m, p, activation
        self.input_block = LinearBlock(1, f, 5, p)
        self.body = nn.ModuleList(LinearBlock(f, f, 3, p, residual=True) for _ in range(m))
        self.acts = nn.ModuleList(
            TrainPReLU(f, init=0.25) if activation == "prelu" else nn.ReLU() for _ in range(m)
        )
        self.output_block = LinearBlock(f, scale * scale, 5, p)

    def _run(self, y: torch.Tensor, expanded: bool) -> torch.Tensor:
        call = (lambda b, x: b.forward_expanded(x)) if expanded else (lambda b, x: b(x))
        x0 = call(self.input_block, y - 0.5)
        h = x0
        for block, act in zip(self.body, self.acts):
            h = act(call(block, h))  # the short residual is inside the block
        z = call(self.output_block, h + x0) + y
        return torch.clamp(_depth_to_space(z, self.scale), 0.0, 1.0)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self._run(y, expanded=False)

    def forward_expanded(self, y: torch.Tensor) -> torch.Tensor:
        return self._run(y, expanded=True)

    @torch.no_grad()
    def collapse(self) -> "CollapsedSESR":
        ref = self.input_block.expand
        net = CollapsedSESR(self.scale, self.f, self.m, self.activation).to(ref.device, ref.dtype)
        net.input_conv.weight.copy_(self.input_block.collapsed_weight())
        for conv, block in zip(net.body, self.body):
            conv.weight.copy_(block.collapsed_weight())
        for mine, theirs in zip(net.acts, self.acts):
            if isinstance(theirs, nn.PReLU):
                mine.weight.copy_(theirs.weight)
        net.output_conv.weight.copy_(self.output_block.collapsed_weight())
        return net.eval()


class CollapsedSESR(nn.Module):
    """The inference network: m + 2 plain convolutions (no bias)."""

    def __init__(self, scale: int, f: int, m: int, activation: str = "prelu"):
        super().__init__()
        self.scale = scale
        self.input_conv = nn.Conv2d(1, f, 5, padding=2, bias=False)
        self.body = nn.ModuleList(nn.Conv2d(f, f, 3, padding=1, bias=False) for _ in range(m))
        self.acts = nn.ModuleList(nn.PReLU(f) if activation == "prelu" else nn.ReLU() for _ in range(m))
        self.output_conv = nn.Conv2d(f, scale * scale, 5, padding=2, bias=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x0 = self.input_conv(y - 0.5)
        h = x0
        for conv, act in zip(self.body, self.acts):
            h = act(conv(h))
        z = self.output_conv(h + x0) + y
        return torch.clamp(_depth_to_space(z, self.scale), 0.0, 1.0)


@dataclass(frozen=True)
class SesrSpec:
    variant: str
    scale: int
    f: int
    m: int
    activation: str = "prelu"

    @property
    def macs_per_input_pixel(self) -> int:
        return sesr_macs_per_pixel(self.f, self.m, self.scale)


def build_sesr(variant: str = "M5", scale: int = 2, p: int = 256, activation: str = "prelu") -> SESR:
    variant = variant.upper()
    if variant not in VARIANTS:
        raise ValueError(f"unknown SESR variant {variant!r}; one of {sorted(VARIANTS)}")
    f, m = VARIANTS[variant]
    return SESR(scale=scale, f=f, m=m, p=p, activation=activation)
