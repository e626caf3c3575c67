"""CFRNet per-cycle latency on this CPU: FP32 vs INT8 at 1 and 2 threads, and INT8 against the
CPU's INT8 floor. Prints tables; never part of the test run.

    nice -n 10 python benchmarks/bench_cfrnet_cpu.py                  # 20 interleaved rounds
    python benchmarks/bench_cfrnet_cpu.py --rounds 40 --json out.json

Models: models/cfrnet_fp32.onnx and models/cfrnet_int8.onnx where both exist; otherwise (or with
--stand-in paper|training) a stand-in: ``training`` is training/cfrnet.py's architecture with
untrained weights, exported and quantised by training/onnx_export.py; ``paper`` (the default)
is the CFRNet paper's network rebuilt by app/core/npu/reference.py (2.09 M parameters,
1/4-resolution trunk, 27 blocks × 64 channels, random weights), quantised by
training/onnx_export.quantize_int8 (static QDQ, QUInt8 activations, per-channel QInt8 weights,
reduce_range=True, as DESIGN §10 prescribes) — cached under .cache/bench_cfrnet/.

These machines are shared (other engineers, a training job): the four variants run interleaved,
one call each per round in rotating order, and the ratios (INT8/FP32, 2t/1t) are taken per round
and then the median, so that a load change hits both sides of a ratio.

INT8 floor = MACs per cycle ÷ (threads × int8 MAC/cycle/core for the CPU's best int8 dot-product
instruction × clock). The clock is estimated from a measured FP32 kernel: the best of a 1-thread
ONNX Runtime FP32 MatMul (384³, best of 200
short runs, so that one of them likely ran uncontended) in MAC/s ÷ the FP32 FMA lanes per cycle per core (so the clock
is a lower bound: a GEMM below peak makes it lower, and the floor higher).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.npu import analyse_model  # noqa: E402
from app.core.npu.reference import cfrnet_paper  # noqa: E402
from app.core.onnx_session import OnnxModel  # noqa: E402

CACHE = ROOT / ".cache" / "bench_cfrnet"
SHAPE = (1, 3, 256, 256)


# ------------------------------------------------------------------------------ the CPU ---------

def cpu_info() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags: set[str] = set()
    model = vendor = ""
    mhz = []
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "flags" and not flags:
            flags = set(val.split())
        elif key == "model name" and not model:
            model = val
        elif key == "vendor_id" and not vendor:
            vendor = val
        elif key == "cpu MHz":
            mhz.append(float(val))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # int8 MACs per cycle per core, by the best instruction the CPU has (one issue per cycle on
    # AMD; Intel server cores with two 512-bit FMA ports issue two)
    if "avx512_vnni" in flags:
        int8, how = (128, "AVX-512 VNNI vpdpbusd zmm, 2/cycle") if vendor == "GenuineIntel" \
            else (64, "AVX-512 VNNI vpdpbusd zmm, 1/cycle")
    elif "avx_vnni" in flags:
        int8, how = 64, "AVX-VNNI vpdpbusd ymm, 2/cycle"
    elif "avx2" in flags:
        int8, how = 32, "AVX2 vpmaddubsw (+vpmaddwd) ymm"
    else:
        int8, how = 16, "SSE4.1 pmaddubsw xmm"
    # FP32 FMA lanes per cycle per core (two FMA pipes; Zen 4 splits 512-bit ops into 2 × 256)
    if "avx512f" in flags and vendor == "GenuineIntel":
        fp32 = 32
    elif "fma" in flags:
        fp32 = 16
    else:
        fp32 = 8
    return {"model": model, "vendor": vendor, "cores": cores, "flags_vnni":
            sorted(f for f in flags if "vnni" in f), "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags, "int8_macs_per_cycle": int8, "int8_instruction": how,
            "fp32_fma_per_cycle": fp32, "cpuinfo_mhz": statistics.median(mhz) if mhz else None}


def estimate_clock(fp32_lanes: int, n: int = 384, runs: int = 200) -> dict:
    """Clock (GHz) ≈ best 1-thread FP32 GEMM MAC/s ÷ FP32 FMA lanes per cycle."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "gemm", [a, b], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "gemm.onnx"
        onnx.save(m, p)
        sess = OnnxModel(p, threads=1)
        rng = np.random.default_rng(0)
        feeds = {"a": rng.random((n, n), dtype=np.float32), "b": rng.random((n, n), dtype=np.float32)}
        sess.run(feeds)
        best = min(_timed(lambda: sess.run(feeds)) for _ in range(runs))
    macs_per_s = n ** 3 / best
    return {"gemm_n": n, "gemm_best_ms": best * 1e3, "fp32_gmac_per_s": macs_per_s / 1e9,
            "clock_ghz": macs_per_s / fp32_lanes / 1e9}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ------------------------------------------------------------------------------ the models ------

def face_like_inputs(n: int, seed: int = 1) -> list[np.ndarray]:
    """Smooth random images in [0, 1] (low-frequency noise): calibration and timing inputs."""
    import cv2
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.random((3, 16, 16), dtype=np.float32)
        big = np.stack([cv2.resize(c, (256, 256), interpolation=cv2.INTER_CUBIC) for c in small])
        out.append(np.clip(big + 0.03 * rng.standard_normal(big.shape), 0, 1).astype(np.float32)[None])
    return out


def models(args) -> tuple[Path, Path, str]:
    fp32, int8 = ROOT / "models" / "cfrnet_fp32.onnx", ROOT / "models" / "cfrnet_int8.onnx"
    if fp32.is_file() and int8.is_file() and not args.stand_in:
        return fp32, int8, "models/cfrnet_{fp32,int8}.onnx (trained)"
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.stand_in == "training":
        return _training_stand_in()
    fp32, int8 = CACHE / "cfrnet_paper_fp32.onnx", CACHE / "cfrnet_paper_int8.onnx"
    if not fp32.is_file():
        m = cfrnet_paper()
        for vi in (m.graph.input[0], m.graph.output[0]):  # static 1×3×256×256, as exported models are
            for d, v in zip(vi.type.tensor_type.shape.dim, SHAPE):
                d.ClearField("dim_param")
                d.dim_value = v
        onnx.save(m, fp32)
    if not int8.is_file():
        from training.onnx_export import quantize_int8
        print("quantising the stand-in (static QDQ, reduce_range=True) …", flush=True)
        quantize_int8(fp32, int8, face_like_inputs(8, seed=7), {"name": "cfrnet_paper_standin"})
    return fp32, int8, "stand-in: CFRNet paper's network rebuilt (random weights), quantised here"


def _training_stand_in() -> tuple[Path, Path, str]:
    """The architecture training/cfrnet.py trains (untrained weights), exported and quantised by
    training/onnx_export.py exactly as a trained checkpoint would be."""
    fp32, int8 = CACHE / "cfrnet_training_fp32.onnx", CACHE / "cfrnet_training_int8.onnx"
    if not fp32.is_file() or not int8.is_file():
        import torch
        from training.cfrnet import build
        from training.onnx_export import export_onnx, quantize_int8
        torch.manual_seed(0)
        net = build().eval()
        with torch.no_grad():  # an untrained net is the identity: give its last conv weights
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d) and not m.weight.abs().sum():
                    m.weight.normal_(0, 0.01)
        export_onnx(net, fp32, torch.rand(1, *SHAPE[1:]), {"name": "cfrnet_training_standin"},
                    dynamic_batch=False)
        print("quantising the stand-in (static QDQ, reduce_range=True) …", flush=True)
        quantize_int8(fp32, int8, face_like_inputs(8, seed=7), {"name": "cfrnet_training_standin"})
    return fp32, int8, "stand-in: training/cfrnet.py's architecture (untrained), exported and quantised here"


# ------------------------------------------------------------------------------ the run ---------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--stand-in", choices=["paper", "training"], default=None,
                    help="time a stand-in even if models/ has CFRNet: 'paper' (the CFRNet paper's "
                    "8.5 GMAC network rebuilt) or 'training' (training/cfrnet.py's architecture)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    cpu = cpu_info()
    fp32_path, int8_path, source = models(args)
    macs = analyse_model(fp32_path, SHAPE).macs
    clock = estimate_clock(cpu["fp32_fma_per_cycle"])
    x = face_like_inputs(1, seed=3)[0]

    variants = {}
    for prec, path in (("fp32", fp32_path), ("int8", int8_path)):
        for t in (1, 2):
            variants[(prec, t)] = OnnxModel(path, threads=t)
    for m in variants.values():
        for _ in range(args.warmup):
            m.run1(x)
    times = {k: [] for k in variants}
    cpu_times = {k: [] for k in variants}   # process CPU time: what the run cost, not the waiting
    keys = list(variants)
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]  # rotate who goes first
        for k in order:
            c0 = time.process_time()
            times[k].append(_timed(lambda: variants[k].run1(x)) * 1e3)
            cpu_times[k].append((time.process_time() - c0) * 1e3)

    def med(v):
        return statistics.median(v)

    def spread(v):
        q = statistics.quantiles(v, n=10)
        return q[0], q[-1]

    ratio = {t: [f / i for f, i in zip(times[("fp32", t)], times[("int8", t)])] for t in (1, 2)}
    scale = {p: [a / b for a, b in zip(times[(p, 1)], times[(p, 2)])] for p in ("fp32", "int8")}
    floor_ms = {t: macs / (t * cpu["int8_macs_per_cycle"] * clock["clock_ghz"] * 1e9) * 1e3
                for t in (1, 2)}

    print(f"\nCFRNet per cycle, 256×256 — {source}")
    print(f"machine: {cpu['model']} ({cpu['vendor']}), {cpu['cores']} cores available, "
          f"AVX2 {'yes' if cpu['avx2'] else 'no'}, AVX-512 {'yes' if cpu['avx512f'] else 'no'}, "
          f"VNNI: {', '.join(cpu['flags_vnni']) or 'none'}; onnxruntime {ort.__version__}, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"model: {macs / 1e9:.3f} GMAC per cycle (app.core.npu.analyse_model), "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up runs each\n")
    print("| variant | median ms | p10–p90 ms | best ms | INT8 floor ms | median × floor | best × floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (p, t) in keys:
        v = times[(p, t)]
        lo, hi = spread(v)
        fl = f"{floor_ms[t]:.1f}" if p == "int8" else ""
        xf = f"{med(v) / floor_ms[t]:.2f}" if p == "int8" else ""
        xb = f"{min(v) / floor_ms[t]:.2f}" if p == "int8" else ""
        print(f"| {p.upper()} {t} thread{'s' if t > 1 else ''} | {med(v):.1f} | {lo:.1f}–{hi:.1f} | "
              f"{min(v):.1f} | {fl} | {xf} | {xb} |")
    print()
    c1 = {p: med(cpu_times[(p, 1)]) for p in ("fp32", "int8")}
    print(f"1-thread runs by process CPU time (excludes time spent waiting for a core, so less hit by "
          f"the other jobs): FP32 {c1['fp32']:.1f} ms, INT8 {c1['int8']:.1f} ms = "
          f"{c1['int8'] / floor_ms[1]:.2f}× the INT8 floor; INT8 speed-up {c1['fp32'] / c1['int8']:.2f}×")
    print()
    for t in (1, 2):
        lo, hi = spread(ratio[t])
        print(f"INT8 speed-up over FP32 at {t} thread{'s' if t > 1 else ''}: {med(ratio[t]):.2f}× "
              f"(per-round p10–p90 {lo:.2f}–{hi:.2f})")
    for p in ("fp32", "int8"):
        lo, hi = spread(scale[p])
        print(f"{p.upper()} 2-thread / 1-thread speed-up: {med(scale[p]):.2f}× (p10–p90 {lo:.2f}–{hi:.2f})")
    print(f"\nINT8 floor: {macs / 1e9:.3f} GMAC ÷ (threads × {cpu['int8_macs_per_cycle']} int8 MAC/cycle/core "
          f"[{cpu['int8_instruction']}] × {clock['clock_ghz']:.2f} GHz)")
    print(f"  clock estimated from a measured FP32 kernel: best of 200 1-thread ONNX Runtime MatMul "
          f"{clock['gemm_n']}³ = {clock['gemm_best_ms']:.1f} ms = {clock['fp32_gmac_per_s']:.1f} GMAC/s, "
          f"÷ {cpu['fp32_fma_per_cycle']} FP32 FMA/cycle/core = {clock['clock_ghz']:.2f} GHz"
          + (f" (/proc/cpuinfo reports {cpu['cpuinfo_mhz'] / 1000:.2f} GHz)" if cpu["cpuinfo_mhz"] else ""))
    target = 2.5 if cpu["flags_vnni"] else 1.8
    print(f"  targets (DESIGN §7): INT8 ≥ {target}× FP32 on this {'VNNI' if cpu['flags_vnni'] else 'AVX2'} "
          f"CPU: {'met' if med(ratio[1]) >= target else 'NOT met'} at 1 thread; within 1.15× of the floor at "
          f"1 thread: {'met' if med(times[('int8', 1)]) <= 1.15 * floor_ms[1] else 'NOT met'} (median), "
          f"{'met' if min(times[('int8', 1)]) <= 1.15 * floor_ms[1] else 'NOT met'} (best)")
    print(f"  load average at the end {os.getloadavg()[0]:.2f} on {cpu['cores']} cores: medians and "
          f"best-of are both shown because other jobs share these cores")
    if args.json:
        args.json.write_text(json.dumps({
            "source": source, "macs": macs, "cpu": cpu, "clock": clock, "floor_ms": floor_ms,
            "times_ms": {f"{p}_{t}t": v for (p, t), v in times.items()},
            "cpu_times_ms": {f"{p}_{t}t": v for (p, t), v in cpu_times.items()},
            "int8_speedup": {f"{t}t": med(ratio[t]) for t in (1, 2)},
            "thread_scaling": {p: med(scale[p]) for p in ("fp32", "int8")},
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
