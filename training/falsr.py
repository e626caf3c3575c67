"""FALSR (Chu et al., Xiaomi, arXiv 1901.07261): super-resolution networks found by architecture search.

FALSR's search space is a fixed macro skeleton with seven searched *cells* and searched
*connections*:

    stem   = relu(conv3×3(y))                                   1 → 32, Y channel in [0, 1]
    cell i = CELL_i(concat(chosen earlier outputs))              any of: stem, cell 0 … cell i−1
    h      = relu(conv3×3(concat(chosen outputs))) + stem        → 32, the global residual
    out    = clip(conv3×3(depth_to_space(h, 2)), 0, 1)           32 → 8 → 1 at the HR size

A cell is one of three block types, each with a searched width ``f`` ∈ {16, 32, 48, 64}, kernel
``k`` ∈ {1, 3}, repeat count ``b`` ∈ {1, 2, 4} and an in-cell ``skip`` flag:

- ``conv``: ``b`` × (k×k conv → ReLU); with ``skip`` and b > 1 the first block's output is added
  to the last's.
- ``group``: the same with grouped convolutions (``groups`` ∈ {2, 4}).
- ``ib`` (inverted bottleneck, expansion 2): a linear 1×1 conv to ``f`` (the width adapter), then
  ``b`` × [k×k conv f → 2f → ReLU → depthwise 3×3 → ReLU → k×k conv 2f → f] each with its own
  residual; with ``skip`` and b > 1 the adapter's output is added once more at the end.

The three published networks are written below as data (``FALSR_A/B/C``). They were read off the
graph of the authors' released frozen models (xiaomi-automl/FALSR ``pretrained_model/*.pb``; the
node names spell each cell's choice, e.g. ``invertBotConE2_f48_k3_b4_noskip``) and the paper's
Figure of the found models; the code is ours. Points worth knowing, all taken from those graphs:

- the inverted bottleneck's expand and project convs are k×k (not 1×1 as in MobileNetV2);
- ``skip`` with b = 1 adds nothing (FALSR-C cells 4 and 6, FALSR-B cells 0 and 6);
- the network predicts Y itself (no bicubic residual); chroma is upsampled outside the network.

Every operator is NPU-friendly (DESIGN §3): Conv (plain, grouped, depthwise), ReLU, Add, Concat,
DepthToSpace, Clip. No normalisation, no attention.

Parameter counts (weights + biases) equal the released graphs' exactly: FALSR-A 1,021,401,
FALSR-B 324,745, FALSR-C 426,569. The paper/README print 1,021K, 326K and 408K: A and B agree
(0.0 % / −0.4 %), C's released graph is 4.5 % larger than its printed figure (and its Mult-Adds,
97.96 G for a 720p output against the printed 93.7 G, by the same 4.5 %). We follow the released
graph; ``tests/test_falsr.py`` checks both counts against the printed ones with those tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CellSpec",
    "ArchSpec",
    "FALSR_A",
    "FALSR_B",
    "FALSR_C",
    "VARIANTS",
    "PUBLISHED",
    "FALSR",
    "build_falsr",
    "count_macs",
    "macs_per_input_pixel",
    "receptive_radius",
]

STEM = -1  # index of the stem's output in ``inputs`` lists; cells are 0 … n−1


@dataclass(frozen=True)
class CellSpec:
    """One searched cell: block type, width, kernel, repeats, in-cell skip, and its inputs."""

    kind: str  # 'conv' | 'group' | 'ib'
    channels: int
    kernel: int
    repeats: int
    skip: bool
    inputs: tuple[int, ...]  # STEM or earlier cell indices, concatenated in this order
    groups: int = 1  # for 'group'

    def __post_init__(self):
        if self.kind not in ("conv", "group", "ib"):
            raise ValueError(f"unknown cell kind {self.kind!r}")
        if self.kernel not in (1, 3) or self.repeats < 1 or not self.inputs:
            raise ValueError(f"bad cell {self}")
        if self.kind == "group" and self.groups < 2:
            raise ValueError("a 'group' cell needs groups >= 2")


@dataclass(frozen=True)
class ArchSpec:
    name: str
    cells: tuple[CellSpec, ...]
    final_inputs: tuple[int, ...]
    stem_channels: int = 32
    scale: int = 2

    def __post_init__(self):
        for i, c in enumerate(self.cells):
            if any(j >= i or j < STEM for j in c.inputs):
                raise ValueError(f"{self.name}: cell {i} reads a later cell: {c.inputs}")
        if any(j >= len(self.cells) or j < STEM for j in self.final_inputs):
            raise ValueError(f"{self.name}: bad final inputs {self.final_inputs}")


def _c(kind, f, k, b, skip, inputs, groups=1):
    return CellSpec(kind, f, k, b, skip, tuple(inputs), groups)


# Read off the released graphs (see the module docstring). S = the stem.
S = STEM
FALSR_A = ArchSpec(
    "A",
    (
        _c("conv", 64, 3, 4, True, [S]),
        _c("conv", 48, 1, 1, True, [0]),
        _c("conv", 64, 3, 4, True, [1]),
        _c("conv", 64, 3, 4, True, [1, 2]),
        _c("conv", 64, 3, 4, True, [S, 1, 3]),
        _c("conv", 64, 1, 4, False, [4]),
        _c("conv", 64, 3, 4, True, [S, 1, 4, 5]),
    ),
    final_inputs=(S, 0, 1, 2, 3, 4, 5, 6),
)
FALSR_B = ArchSpec(
    "B",
    (
        _c("ib", 16, 3, 1, True, [S]),
        _c("ib", 48, 1, 2, True, [S, 0]),
        _c("conv", 16, 1, 2, True, [S, 0, 1]),
        _c("ib", 32, 3, 4, False, [2]),
        _c("conv", 64, 3, 2, False, [1, 2, 3]),
        _c("group", 16, 3, 4, False, [1, 3, 4], groups=4),
        _c("conv", 16, 3, 1, True, [S, 0, 1, 5]),
    ),
    final_inputs=(0, 3, 5, 6),
)
FALSR_C = ArchSpec(
    "C",
    (
        _c("group", 32, 1, 1, False, [S], groups=2),
        _c("conv", 64, 1, 4, False, [S, 0]),
        _c("ib", 48, 3, 4, False, [1]),
        _c("group", 32, 1, 1, False, [0, 2], groups=2),
        _c("group", 32, 1, 1, True, [S, 3], groups=4),
        _c("conv", 48, 1, 4, False, [S, 4]),
        _c("conv", 16, 3, 1, True, [0, 5]),
    ),
    final_inputs=(S, 1, 5, 6),
)
del S

VARIANTS = {"A": FALSR_A, "B": FALSR_B, "C": FALSR_C}

# The paper's Table 1 / the authors' README (×2; Mult-Adds for a 1280×720 output).
# Also in ../shared/data/sr/PUBLISHED.md; kept here for the model card and the tests.
PUBLISHED = {
    "A": {"params": 1_021_000, "mult_adds_720p": 234.7e9, "Set5": 37.82, "Set14": 33.55, "B100": 32.12},
    "B": {"params": 326_000, "mult_adds_720p": 74.7e9, "Set5": 37.61, "Set14": 33.29, "B100": 31.97},
    "C": {"params": 408_000, "mult_adds_720p": 93.7e9, "Set5": 37.66, "Set14": 33.26, "B100": 31.96},
}


class _ConvCell(nn.Module):
    """``conv`` and ``group`` cells: b × (k×k conv → ReLU), optional first-to-last skip."""

    def __init__(self, c_in: int, spec: CellSpec):
        super().__init__()
        g, f, k = spec.groups, spec.channels, spec.kernel
        if c_in % g or f % g:
            raise ValueError(f"grouped conv: {c_in} → {f} channels not divisible by {g} groups")
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in if i == 0 else f, f, k, padding=k // 2, groups=g) for i in range(spec.repeats)
        )
        self.skip = spec.skip and spec.repeats > 1

    def forward(self, x):
        first = x = F.relu(self.convs[0](x))
        for conv in self.convs[1:]:
            x = F.relu(conv(x))
        return x + first if self.skip else x


class _InvertedBottleneck(nn.Module):
    """k×k conv f → 2f, ReLU, depthwise 3×3, ReLU, k×k conv 2f → f (linear)."""

    def __init__(self, f: int, k: int):
        super().__init__()
        self.expand = nn.Conv2d(f, 2 * f, k, padding=k // 2)
        self.depthwise = nn.Conv2d(2 * f, 2 * f, 3, padding=1, groups=2 * f)
        self.project = nn.Conv2d(2 * f, f, k, padding=k // 2)

    def forward(self, x):
        return self.project(F.relu(self.depthwise(F.relu(self.expand(x)))))


class _IBCell(nn.Module):
    """``ib`` cell: linear 1×1 width adapter, b residual inverted bottlenecks, optional outer skip."""

    def __init__(self, c_in: int, spec: CellSpec):
        super().__init__()
        self.adapt = nn.Conv2d(c_in, spec.channels, 1)
        self.blocks = nn.ModuleList(_InvertedBottleneck(spec.channels, spec.kernel) for _ in range(spec.repeats))
        self.skip = spec.skip and spec.repeats > 1

    def forward(self, x):
        x0 = x = self.adapt(x)
        for block in self.blocks:
            x = block(x) + x
        return x + x0 if self.skip else x


class FALSR(nn.Module):
    """A network of the FALSR search space. Input N×1×H×W Y in [0, 1]; output N×1×sH×sW in [0, 1]."""

    def __init__(self, arch: ArchSpec):
        super().__init__()
        self.arch = arch
        s = arch.stem_channels
        if s % (arch.scale**2):
            raise ValueError("stem channels must be divisible by scale²")
        self.stem = nn.Conv2d(1, s, 3, padding=1)
        widths = {STEM: s}
        cells = []
        for i, spec in enumerate(arch.cells):
            c_in = sum(widths[j] for j in spec.inputs)
            cells.append(_IBCell(c_in, spec) if spec.kind == "ib" else _ConvCell(c_in, spec))
            widths[i] = spec.channels
        self.cells = nn.ModuleList(cells)
        self.fuse = nn.Conv2d(sum(widths[j] for j in arch.final_inputs), s, 3, padding=1)
        self.upsample = nn.PixelShuffle(arch.scale)
        self.out = nn.Conv2d(s // arch.scale**2, 1, 3, padding=1)
        # Training speed-up (``training.train_falsr --precision bf16``): the cells and the fuse conv
        # (99 % of the MACs) run under CPU bf16 autocast; the stem, the global residual add and the
        # HR tail stay FP32 because the output is stem + a small correction, and bf16's 8-bit
        # mantissa on the whole signal flips the L1 gradient's sign on well-fitted pixels.
        self.trunk_dtype: torch.dtype | None = None

    @property
    def scale(self) -> int:
        return self.arch.scale

    @staticmethod
    def _gather(outs, idx):
        return outs[idx[0]] if len(idx) == 1 else torch.cat([outs[j] for j in idx], dim=1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        stem = F.relu(self.stem(y))
        outs = {STEM: stem}
        with torch.autocast("cpu", dtype=self.trunk_dtype or torch.bfloat16, enabled=self.trunk_dtype is not None):
            for i, (spec, cell) in enumerate(zip(self.arch.cells, self.cells)):
                outs[i] = cell(self._gather(outs, spec.inputs))
            h = F.relu(self.fuse(self._gather(outs, self.arch.final_inputs)))
        h = h.float() + stem
        return torch.clamp(self.out(self.upsample(h)), 0.0, 1.0)


def build_falsr(variant: str = "C") -> FALSR:
    key = variant.upper().removeprefix("FALSR-")
    if key not in VARIANTS:
        raise ValueError(f"unknown FALSR variant {variant!r}; choose from {sorted(VARIANTS)}")
    return FALSR(VARIANTS[key])


def count_macs(model: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """Multiply-accumulates of every Conv2d for one forward pass at ``input_shape`` (biases, ReLU,
    adds and depth-to-space not counted, as the SR papers count)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return int(total)


def macs_per_input_pixel(model: FALSR, size: int = 16) -> float:
    """MACs per LR input pixel (exact: every conv's cost is linear in the pixel count)."""
    return count_macs(model, (1, 1, size, size)) / (size * size)


def receptive_radius(arch: ArchSpec) -> int:
    """LR pixels of context an output pixel depends on, each way (the tiler's margin): the longest
    chain of k×k convs through the cells' connections; the last 3×3 conv runs at HR (half a pixel)."""
    r = {STEM: 1}
    for i, c in enumerate(arch.cells):
        per_block = 2 * (c.kernel // 2) + 1 if c.kind == "ib" else c.kernel // 2  # ib: k, dw 3×3, k
        r[i] = max(r[j] for j in c.inputs) + c.repeats * per_block
    fused = max(r[j] for j in arch.final_inputs) + 1
    return fused + 1  # the HR 3×3 conv reaches 1/scale LR pixel each way: round up
