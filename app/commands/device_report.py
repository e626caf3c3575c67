"""`cfr-studio device-report MODEL`: what a restoration costs on an embedded NPU (simulated) next
to what it costs on this computer (measured in the same run, through the app's ONNX session)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from app.core.errors import CfrError
from app.core.npu import Simulation, list_profiles, simulate
from app.core.npu.graph import human, load_onnx
from app.core.onnx_session import OnnxModel


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "device-report",
        help="simulated NPU latency of a model next to the time measured on this CPU",
        description="Simulate MODEL on an embedded NPU (a per-layer roofline calibrated on "
        "published figures) and measure the same work on this computer's CPU.",
    )
    p.add_argument("model", type=Path, help="ONNX model (FP32 or QDQ INT8)")
    p.add_argument("--npu", default="hi3402", choices=list_profiles(), help="NPU profile")
    p.add_argument("--size", default="256x256", type=_size, metavar="HxW",
                   help="input height × width in pixels (default 256x256)")
    p.add_argument("--k", type=int, default=1, help="cycles per face (default 1)")
    p.add_argument("--faces", type=int, default=1, help="faces per photo (default 1)")
    p.add_argument("--tile", type=_size, default=None, metavar="HxW",
                   help="simulate the network on tiles of this size (with their halo)")
    p.add_argument("--layers", action="store_true", help="print the per-layer table")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: ONNX Runtime decides)")
    p.add_argument("--cpu-runs", type=int, default=3,
                   help="timed CPU runs after one warm-up, median reported (0: skip the CPU)")
    p.set_defaults(func=run)
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x256 (got {text!r})")
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive (got {text!r})")
    return h, w


def _input_shape(model_path: Path, size: tuple[int, int]) -> tuple[int, int, int, int]:
    proto = load_onnx(model_path)
    inits = {i.name for i in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    channels = dims[1].dim_value if len(dims) > 1 and dims[1].dim_value else 3
    return (1, int(channels), size[0], size[1])


def measure_cpu(model_path: Path, shape: tuple[int, ...], k: int, runs: int, threads: int) -> dict:
    """Median wall time of k chained cycles (output fed back as input) on random input."""
    model = OnnxModel(model_path, threads=threads)
    x0 = np.random.default_rng(0).random(shape, dtype=np.float32)

    def chain() -> float:
        x = x0
        t = time.perf_counter()
        for _ in range(k):
            y = model.run1(x)
            x = y if y.shape == x.shape else x0  # SR models: each cycle on the same input
        return time.perf_counter() - t

    chain()  # warm-up: the first run allocates and plans
    times = [chain() for _ in range(runs)]
    med = statistics.median(times)
    return {"cpu_chain_ms": med * 1000.0, "cpu_per_cycle_ms": med * 1000.0 / k,
            "cpu_spread_ms": (max(times) - min(times)) * 1000.0, "cpu_runs": runs,
            "cpu_threads": threads or os.cpu_count()}


def report(sim: Simulation, model: Path, k: int, faces: int, size: tuple[int, int],
           cpu: dict | None, with_layers: bool) -> dict:
    total = sim.per_inference_ms * k * faces
    out = {
        "npu": sim.profile.name,
        "npu_name": sim.profile.display_name,
        "simulated": True,
        "model": str(model),
        "size": f"{size[0]}x{size[1]}",
        "k": k,
        "faces": faces,
        "macs_per_cycle": sim.macs,
        "executed_macs_per_cycle": sim.executed_macs,
        "params": sim.params,
        "per_cycle_ms": round(sim.per_inference_ms, 6),
        "ideal_per_cycle_ms": round(sim.ideal_ms, 6),
        "total_ms": round(total, 6),
        "fps": round(1000.0 / total, 3) if total > 0 else None,
        "tiles": round(sim.tiles, 3),
        "dram_bytes_per_cycle": sim.dram_bytes,
        "unknown_ops": sim.unknown_ops,
        "assumptions": sim.assumptions,
        "cpu_per_cycle_ms": round(cpu["cpu_per_cycle_ms"], 3) if cpu else None,
        "cpu_total_ms": round(cpu["cpu_chain_ms"] * faces, 3) if cpu else None,
        "cpu_spread_ms": round(cpu["cpu_spread_ms"], 3) if cpu else None,
        "cpu_threads": cpu["cpu_threads"] if cpu else None,
        "cpu_runs": cpu["cpu_runs"] if cpu else 0,
    }
    if with_layers:
        out["layers"] = [
            {"name": l.name, "op": l.op_type, "fused": l.fused, "macs": l.macs,
             "output_shape": list(l.output_shape), "dram_bytes": l.dram_bytes,
             "compute_ms": round(l.compute_ms, 4), "memory_ms": round(l.memory_ms, 4),
             "overhead_ms": round(l.overhead_ms, 4), "ms": round(l.ms, 4), "bound": l.bound,
             "cascade": l.section, "column_tiles": l.column_tiles}
            for l in sim.layers
        ]
    return out


def _print_text(r: dict, sim: Simulation, with_layers: bool) -> None:
    p = sim.profile
    print(f"{r['model']} on {p.display_name} (SIMULATED), input {r['size']}")
    print(f"  {human(r['macs_per_cycle'], 'MAC')} per cycle ({human(r['executed_macs_per_cycle'], 'MAC')} "
          f"executed), {human(r['params'])} parameters, {human(r['dram_bytes_per_cycle'], 'B')} DRAM traffic")
    if sim.unknown_ops:
        print(f"  NOT COUNTED (unknown operators): {', '.join(sim.unknown_ops)}")
    if with_layers:
        print(f"\n  {'#':>3} {'op':<14} {'fused':<10} {'MACs':>9} {'DRAM':>9} {'compute':>9} "
              f"{'memory':>9} {'total':>9}  bound    casc")
        for i, l in enumerate(sim.layers):
            print(f"  {i:>3} {l.op_type:<14} {'+'.join(l.fused):<10} {human(l.macs):>9} "
                  f"{human(l.dram_bytes, 'B'):>9} {l.compute_ms:>7.3f}ms {l.memory_ms:>7.3f}ms "
                  f"{l.ms:>7.3f}ms  {l.bound:<8} {l.section}")
        if sim.tiles != 1:
            print(f"  (one tile of {sim.tiles:.2f}; input with halo {sim.tile_shape[2]}×{sim.tile_shape[3]})")
        print()
    print(f"  per cycle   {r['per_cycle_ms']:10.2f} ms simulated   (100 % of peak, no memory limit: "
          f"{r['ideal_per_cycle_ms']:.2f} ms)")
    print(f"  × k={r['k']} × faces={r['faces']}: {r['total_ms']:8.2f} ms simulated per photo ({r['fps']:.1f} photos per second)")
    if r["cpu_per_cycle_ms"] is not None:
        print(f"  this CPU    {r['cpu_per_cycle_ms']:10.2f} ms per cycle measured "
              f"(median of {r['cpu_runs']}, spread {r['cpu_spread_ms']:.1f} ms, {r['cpu_threads']} threads); "
              f"× k × faces: {r['cpu_total_ms']:.1f} ms")
    print("  assumptions:")
    for a in r["assumptions"]:
        print(f"   - {a}")


def run(args: argparse.Namespace) -> int:
    if args.k < 1 or args.faces < 1:
        print("cfr-studio device-report: --k and --faces must be at least 1", file=sys.stderr)
        return 2
    try:
        shape = _input_shape(args.model, args.size)
        sim = simulate(args.model, npu=args.npu, input_shape=shape, tile=args.tile)
    except CfrError as exc:
        print(f"cfr-studio device-report: {exc}", file=sys.stderr)
        return 1
    cpu, cpu_error = None, None
    if args.cpu_runs > 0:
        try:
            cpu = measure_cpu(args.model, shape, args.k, args.cpu_runs, args.threads)
        except Exception as exc:  # ONNX Runtime's own errors, e.g. a fixed input size
            cpu_error = f"{args.model}: could not run on this CPU at {args.size[0]}x{args.size[1]} ({exc})"
            print(f"cfr-studio device-report: {cpu_error}", file=sys.stderr)
    r = report(sim, args.model, args.k, args.faces, args.size, cpu, args.layers)
    r["cpu_error"] = cpu_error
    if args.json:
        print(json.dumps(r, indent=None))
    else:
        _print_text(r, sim, args.layers)
    return 0
