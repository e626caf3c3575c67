"""Per-layer roofline timing of a counted graph on an NPU profile.

The execution model (every assumption is also returned as text, see ``assumptions``):
1. Activation functions that directly follow a MAC layer with a single consumer are fused into
   it (the NPU applies them on the way out); QDQ pairs are already folded by the graph walk.
2. The NPU streams feature maps through its on-chip SRAM in horizontal stripes. Consecutive
   layers are *cascaded* (fused) while the line buffers they need together fit in the SRAM: a
   k-row kernel holds k + stride input rows of the full width, a skip connection holds the rows
   it must wait for. A tensor that crosses a cascade boundary goes to DRAM and back.
3. A layer whose own line buffers exceed the SRAM is split into vertical column tiles, each
   re-reading the halo its kernel needs (kw − 1 columns per extra tile).
4. Layer time = max(executed MACs / (peak × utilisation × channel fill), DRAM bytes / bandwidth)
   + per-layer overhead. Channel fill models a MAC array that works on ``parallel_out`` output
   and ``parallel_in`` input channels at once: a 16→1 layer fills a sixteenth of it.
5. With ``tile=(h, w)`` the whole network runs on tiles of the input, each enlarged by the
   network's receptive-field halo (recomputed and re-read, so counted); the tile count is the
   pixel ratio (fractional: a partial tile costs pro rata).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.core.npu.graph import ACTIVATION_OPS, GraphStats, LayerStats
from app.core.npu.profiles import NpuProfile

__all__ = ["LayerTiming", "time_graph", "receptive_halo"]

MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# Ops that write into place (no pass of their own on the NPU).
FREE_OPS = {"Concat", "Split", "Slice", "Pad"}
# Ops that only rearrange data: with ``rearrange_in_dram`` they are a DRAM-to-DRAM pass.
REARRANGE_OPS = {"DepthToSpace", "SpaceToDepth", "Transpose"}


@dataclass
class LayerTiming:
    name: str
    op_type: str
    macs: int                  # MACs the NPU executes (ConvTranspose by zero insertion)
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    ms: float
    dram_bytes: int
    bound: str                 # 'compute' | 'memory'
    section: int               # cascade index: layers with the same index share the SRAM
    column_tiles: int = 1
    utilisation: float = 0.0   # the utilisation used for this layer (incl. channel fill)
    fused: list[str] = field(default_factory=list)
    output_shape: tuple[int, ...] = ()


def _fill(n: int, p: int) -> float:
    if p <= 1 or n <= 0:
        return 1.0
    return n / (math.ceil(n / p) * p)


def receptive_halo(stats: GraphStats) -> tuple[int, int]:
    """Rows/columns of input context each side an output pixel depends on (in input pixels)."""
    # Walk the chain accumulating (k-1)/2 at the current scale relative to the input.
    halo: dict[str, tuple[float, float]] = {stats.input_name: (0.0, 0.0)}
    scale: dict[str, tuple[float, float]] = {stats.input_name: (1.0, 1.0)}  # px of input per px
    best = (0.0, 0.0)
    for l in stats.layers:
        ins = [t for t in l.inputs if t in halo]
        if not ins:
            continue
        hy = max(halo[t][0] for t in ins)
        hx = max(halo[t][1] for t in ins)
        sy, sx = scale[ins[0]]
        if l.op_type == "ConvTranspose":
            osy, osx = sy / l.upsample[0], sx / l.upsample[1]
            # a kh-tap transposed kernel touches ceil(kh/stride) input pixels
            hy += (math.ceil(l.kernel[0] / l.upsample[0]) - 1) / 2 * sy
            hx += (math.ceil(l.kernel[1] / l.upsample[1]) - 1) / 2 * sx
        else:
            hy += (l.kernel[0] - 1) / 2 * sy
            hx += (l.kernel[1] - 1) / 2 * sx
            osy = sy * l.stride[0] / l.upsample[0]
            osx = sx * l.stride[1] / l.upsample[1]
        halo[l.output] = (hy, hx)
        scale[l.output] = (osy, osx)
        best = (max(best[0], hy), max(best[1], hx))
    return int(math.ceil(best[0])), int(math.ceil(best[1]))


def _npu_layers(stats: GraphStats) -> list[tuple[LayerStats, list[str], str]]:
    """(layer, fused activation names, output tensor after fusion)."""
    uses: dict[str, int] = {}
    for l in stats.layers:
        for t in l.inputs:
            uses[t] = uses.get(t, 0) + 1
    for o in stats.output_names:
        uses[o] = uses.get(o, 0) + 1
    out: list[tuple[LayerStats, list[str], str]] = []
    producer: dict[str, int] = {}
    for l in stats.layers:
        if (l.op_type in ACTIVATION_OPS and len(l.inputs) == 1 and l.inputs[0] in producer
                and uses.get(l.inputs[0], 0) == 1):
            i = producer.pop(l.inputs[0])
            base, fused, _ = out[i]
            out[i] = (base, fused + [l.op_type], l.output)
            producer[l.output] = i
            continue
        producer[l.output] = len(out)
        out.append((l, [], l.output))
    return out


def _row_bytes(shape: tuple[int, ...], b: float) -> float:
    """Bytes of one row (all channels, full width) of an N×C×H×W tensor; vectors count whole."""
    if len(shape) == 4:
        return shape[0] * shape[1] * shape[3] * b
    return math.prod(shape) * b


def _rows(shape: tuple[int, ...]) -> int:
    return shape[2] if len(shape) == 4 else 1


def time_graph(stats: GraphStats, profile: NpuProfile) -> tuple[list[LayerTiming], float]:
    """Time one inference of ``stats`` (already counted at its input size) on ``profile``."""
    b = profile.activation_bytes
    wb = profile.weight_bytes
    sram = profile.sram_bytes
    layers = _npu_layers(stats)
    shape_of: dict[str, tuple[int, ...]] = {stats.input_name: tuple(stats.input_shape)}
    for l, _, out in layers:
        shape_of[l.output] = l.output_shape
        shape_of[out] = l.output_shape

    # --- cascades: greedy, in graph order -------------------------------------------------------
    section_of: dict[int, int] = {}
    produced_in: dict[str, int] = {stats.input_name: -1}
    pos_of_tensor: dict[str, int] = {stats.input_name: -1}
    depth_rows: list[int] = []   # accumulated kernel rows along the cascade, per layer index
    col_tiles: list[int] = []
    section = 0
    used = 0.0
    start = 0
    for i, (l, fused, out) in enumerate(layers):
        if l.op_type in FREE_OPS:
            need = 0.0
        else:
            kh = l.kernel[0]
            if l.op_type == "ConvTranspose":
                kh = math.ceil(kh / l.upsample[0])
            rows_in = min(kh + l.stride[0], max(1, _rows(l.input_shapes[0]) if l.input_shapes else 1))
            need = sum(rows_in * _row_bytes(s, b) for s in l.input_shapes[:1])
            need += l.params * wb
            # output rows double-buffered on the way out
            need += 2 * l.upsample[0] * _row_bytes(l.output_shape, b)
        # a skip input produced earlier in this cascade waits for the rows in between
        skip = 0.0
        # the input produced last is the stream; the others are skips held in the buffer
        inside = sorted((pos_of_tensor[t], t) for t in l.inputs if pos_of_tensor.get(t, -1) >= start)
        for j, t in inside[:-1]:
            delay = (depth_rows[i - 1] if i else 0) - depth_rows[j] + 2
            skip += min(delay, _rows(shape_of.get(t, (1,)))) * _row_bytes(shape_of.get(t, (1,)), b)
        tiles = 1
        total = need + skip
        if total > sram:
            tiles = math.ceil(total / sram)
        alone = (profile.rearrange_in_dram and l.op_type in REARRANGE_OPS) or (
            profile.transpose_conv == "zero_insertion_dram" and l.op_type == "ConvTranspose")
        after_alone = i > 0 and profile.rearrange_in_dram and layers[i - 1][0].op_type in REARRANGE_OPS
        if (used + total > sram or alone or after_alone) and i > start:
            section += 1
            start = i
            used = 0.0
            skip = 0.0
            total = need
            tiles = max(1, math.ceil(total / sram))
        used += min(total, sram)
        section_of[i] = section
        col_tiles.append(tiles)
        prev = depth_rows[-1] if depth_rows else 0
        depth_rows.append(prev + max(0, l.kernel[0] - 1))
        produced_in[out] = section
        produced_in[l.output] = section
        pos_of_tensor[out] = i
        pos_of_tensor[l.output] = i

    # --- DRAM traffic per layer -------------------------------------------------------------------
    consumers_sections: dict[str, set[int]] = {}
    for i, (l, _, _) in enumerate(layers):
        for t in l.inputs:
            consumers_sections.setdefault(t, set()).add(section_of[i])
    graph_outputs = set(stats.output_names)
    read_once: set[tuple[str, int]] = set()
    timings: list[LayerTiming] = []
    total_ms = profile.inference_overhead_us / 1000.0
    for i, (l, fused, out) in enumerate(layers):
        sec = section_of[i]
        if l.op_type in FREE_OPS:
            timings.append(LayerTiming(l.name, l.op_type, 0, 0.0, 0.0, 0.0, 0.0, 0, "memory", sec,
                                       fused=fused, output_shape=l.output_shape))
            continue
        dram = 0.0
        for t, s in zip(l.inputs, l.input_shapes):
            if produced_in.get(t, -1) != sec and (t, sec) not in read_once:
                read_once.add((t, sec))
                size = math.prod(s) * b
                if col_tiles[i] > 1 and len(s) == 4:
                    halo_cols = (l.kernel[1] - 1) * (col_tiles[i] - 1)
                    size *= 1 + halo_cols / max(1, s[3])
                dram += size
        if out in graph_outputs or any(c != sec for c in consumers_sections.get(out, ())):
            dram += math.prod(l.output_shape) * b
        dram += l.params * wb
        if l.op_type == "ConvTranspose" and profile.transpose_conv == "zero_insertion_dram":
            # the zero-inserted input is written by an up-scaling pass and read back
            s0 = l.input_shapes[0]
            dram += 2 * math.prod(s0) * l.upsample[0] * l.upsample[1] * b
        if l.op_type in MAC_OPS:
            executed = l.macs if profile.transpose_conv == "direct" else l.zero_insertion_macs
            cin = l.in_per_group or l.in_channels
            util = profile.utilisation * _fill(l.out_channels, profile.parallel_out) \
                * _fill(cin, profile.parallel_in)
            compute_s = executed / (profile.peak_macs_per_s * util)
        else:
            executed = l.macs
            util = profile.utilisation
            # element-wise and data-movement passes run on the vector engine
            compute_s = max(l.macs, l.output_elements) / profile.vector_elements_per_s
        memory_s = dram / profile.dram_bytes_per_s
        over = (profile.layer_overhead_us + (col_tiles[i] - 1) * profile.tile_overhead_us) / 1000.0
        ms = max(compute_s, memory_s) * 1000.0 + over
        total_ms += ms
        timings.append(LayerTiming(
            name=l.name, op_type=l.op_type, macs=int(executed), compute_ms=compute_s * 1000.0,
            memory_ms=memory_s * 1000.0, overhead_ms=over, ms=ms, dram_bytes=int(dram),
            bound="compute" if compute_s >= memory_s else "memory", section=sec,
            column_tiles=col_tiles[i], utilisation=util, fused=fused, output_shape=l.output_shape,
        ))
    return timings, total_ms
