"""Embedded-NPU latency simulator: count an ONNX graph's work (``analyse_model``) and time it on
an NPU profile by a per-layer roofline (``simulate``). The figures are *simulated*: every result
carries the assumptions it rests on, in words, for the device panel and the device report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import onnx

from app.core.npu.graph import GraphStats, LayerStats, analyse_model, load_onnx
from app.core.npu.profiles import NpuProfile, list_profiles, load_profile
from app.core.npu.roofline import LayerTiming, receptive_halo, time_graph

__all__ = [
    "GraphStats", "LayerStats", "LayerTiming", "NpuProfile", "Simulation",
    "analyse_model", "list_profiles", "load_profile", "simulate",
]

MODEL_ASSUMPTIONS = (
    "Simulated, not measured: a per-layer roofline, time = max(MACs ÷ (peak × utilisation), "
    "DRAM bytes ÷ bandwidth) + a fixed overhead per layer.",
    "INT8 inference: activations and weights move as one byte each; FP32 models are timed as "
    "if quantised (QDQ pairs are folded, never timed).",
    "Activations (ReLU, PReLU, Clip) after a convolution are fused into it.",
    "Feature maps stream through the on-chip buffer in stripes; consecutive layers are fused "
    "while their line buffers fit, otherwise the tensor between them goes to DRAM and back.",
    "A layer too wide for the buffer is split into column tiles that re-read their kernel's halo.",
    "No contention: the NPU has the DRAM bandwidth of the profile to itself.",
)


@dataclass
class Simulation:
    per_inference_ms: float          # one call of the model at input_shape (all tiles)
    layers: list[LayerTiming]        # one tile's layers (the whole input when tiles == 1)
    macs: int                        # arithmetic MACs of one inference of the whole input
    params: int
    profile: NpuProfile
    assumptions: list[str]
    tiles: float                     # inferences the input is split into (1 = untiled)
    executed_macs: int = 0           # MACs the NPU executes: all tiles with their halos, fused
                                     # activations not counted, ConvTranspose by zero insertion
    ideal_ms: float = 0.0            # executed MACs at 100 % of peak, no memory limit
    per_tile_ms: float = 0.0
    tile_shape: tuple[int, ...] = ()  # input shape of one tile, halo included
    halo: tuple[int, int] = (0, 0)
    dram_bytes: int = 0              # all tiles
    unknown_ops: list[str] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()

    @property
    def fps(self) -> float:
        return 1000.0 / self.per_inference_ms if self.per_inference_ms > 0 else float("inf")

    @property
    def ideal_fps(self) -> float:
        return 1000.0 / self.ideal_ms if self.ideal_ms > 0 else float("inf")


def _stride_multiple(stats: GraphStats) -> int:
    """The input size must be a multiple of this for the graph's strides to divide it."""
    m = 1
    for l in stats.layers:
        m = max(m, l.stride[0], l.stride[1])
    prod = 1
    for l in stats.layers:
        if l.op_type in ("Conv", "SpaceToDepth", "MaxPool", "AveragePool"):
            prod *= l.stride[0]
    return max(m, prod)


def simulate(model: str | Path | onnx.ModelProto, npu: str | NpuProfile = "hi3402",
             input_shape: Sequence[int] = (1, 3, 256, 256),
             tile: tuple[int, int] | None = None) -> Simulation:
    """Simulate one inference of ``model`` at ``input_shape`` on ``npu``.

    ``tile=(h, w)`` runs the network on h×w tiles of the input (each with its receptive-field
    halo) instead of the whole frame, as one would to keep the feature maps on chip."""
    profile = npu if isinstance(npu, NpuProfile) else load_profile(npu)
    proto = load_onnx(model)
    full = analyse_model(proto, input_shape)
    assumptions = list(MODEL_ASSUMPTIONS) + list(profile.assumptions)
    if profile.parallel_out > 1 or profile.parallel_in > 1:
        assumptions.append(
            f"Narrow layers fill the MAC array only partly: it works on {profile.parallel_out} "
            f"output × {profile.parallel_in} input channels at once.")
    shape = tuple(int(v) for v in input_shape)
    if tile is None or (tile[0] >= shape[2] and tile[1] >= shape[3]):
        layers, ms = time_graph(full, profile)
        executed = sum(l.macs for l in layers)
        return Simulation(
            per_inference_ms=ms, layers=layers, macs=full.macs, params=full.params,
            profile=profile, assumptions=assumptions, tiles=1.0, executed_macs=executed,
            ideal_ms=executed / profile.peak_macs_per_s * 1000.0, per_tile_ms=ms,
            tile_shape=shape, halo=(0, 0), dram_bytes=sum(l.dram_bytes for l in layers),
            unknown_ops=list(full.unknown_ops), input_shape=shape,
        )
    th, tw = min(tile[0], shape[2]), min(tile[1], shape[3])
    hy, hx = receptive_halo(full)
    mult = _stride_multiple(full)
    in_h = min(shape[2], math.ceil((th + 2 * hy) / mult) * mult)
    in_w = min(shape[3], math.ceil((tw + 2 * hx) / mult) * mult)
    tile_shape = (shape[0], shape[1], in_h, in_w)
    part = analyse_model(proto, tile_shape)
    layers, tile_ms = time_graph(part, profile)
    n = (shape[2] * shape[3]) / (th * tw)
    executed = sum(l.macs for l in layers)
    assumptions.append(
        f"Tiled: {n:.2f} inferences of {th}×{tw} input pixels, each read with a {hy}×{hx}-pixel "
        f"halo ({in_h}×{in_w}); a partial tile costs pro rata.")
    return Simulation(
        per_inference_ms=tile_ms * n, layers=layers, macs=full.macs, params=full.params,
        profile=profile, assumptions=assumptions, tiles=n, executed_macs=int(executed * n),
        ideal_ms=executed * n / profile.peak_macs_per_s * 1000.0, per_tile_ms=tile_ms,
        tile_shape=tile_shape, halo=(hy, hx),
        dram_bytes=int(sum(l.dram_bytes for l in layers) * n),
        unknown_ops=list(full.unknown_ops), input_shape=shape,
    )
