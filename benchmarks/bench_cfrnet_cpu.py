"""CFRNet per-cycle latency on this CPU: FP32 vs INT8 at 1 and 2 threads, and INT8 against the
CPU's INT8 floor. Prints tables; never part of the test run.

    nice -n 10 python benchmarks/bench_cfrnet_cpu.py                  # 20 interleaved rounds
    python benchmarks/bench_cfrnet_cpu.py --rounds 40 --json out.json
    python benchmarks/bench_cfrnet_cpu.py --also-int8 old_int8.onnx --profile 20   # + an earlier
        # export interleaved, and time per operator type at 1 and 2 threads

Besides FP32 and INT8 at 1 and 2 threads it times two faces restored at once, one 1-thread session
each (how a batch of faces can use two cores when one INT8 call cannot).

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
ONNX Runtime FP32 MatMul (384³, best of 200 short runs, so that one of them likely ran uncontended)
in MAC/s ÷ the FP32 FMA lanes per cycle per core (so the clock is a lower bound: a GEMM below peak
makes it lower, and the floor higher). What the floor really rests on is the ratio of the two
per-cycle rates, int8 MACs ÷ FP32 FMAs, because the clock cancels: floor = MACs × (FP32 lanes ÷ int8
MACs per cycle) ÷ measured FP32 MAC/s.

The rates per core, by micro-architecture (read from /proc/cpuinfo: vendor, family, model, flags):
- AMD Zen 4 (family 25, models 0x10–0x1f, 0x60–0x7f, 0xa0–0xaf: EPYC 9004 "Genoa", Ryzen 7000):
  AVX-512 is executed on 256-bit vector units, each 512-bit instruction "double-pumped" through
  them (A. Yee, numberworld.org, Zen 4 AVX-512 teardown, 2022). Two 256-bit FMA pipes: 16 FP32
  FMA/cycle; VPDPBUSD uses the same two pipes: 2 × 32 = 64 u8×s8 MAC/cycle (one zmm a cycle). So 4
  int8 MACs per FP32 FMA, which the measurement confirms: the big CFRNet convolutions run at
  0.98–1.0× the floor (--profile 20).
- Zen 5 with a full 512-bit datapath doubles both (the ratio stays 4); Intel server cores with two
  512-bit FMA ports: 32 FP32 FMA and 128 int8 MAC/cycle (ratio 4); AVX-VNNI (ymm) client cores:
  16 FMA, 64 int8 MAC; AVX2 only: vpmaddubsw + vpmaddwd, 32 int8 MAC/cycle (ratio 2).
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
    family = cpu_model = None
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
        elif key == "cpu family" and family is None:
            family = int(val)
        elif key == "model" and cpu_model is None:
            cpu_model = int(val)
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
    return {"model": model, "vendor": vendor, "family": family, "model_number": cpu_model,
            "uarch": uarch(vendor, family, cpu_model), "cores": cores, "flags_vnni":
            sorted(f for f in flags if "vnni" in f), "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags, "int8_macs_per_cycle": int8, "int8_instruction": how,
            "fp32_fma_per_cycle": fp32, "cpuinfo_mhz": statistics.median(mhz) if mhz else None}


def uarch(vendor: str, family: int | None, model: int | None) -> str:
    """The micro-architecture, where /proc/cpuinfo's family and model say it (AMD's public numbering)."""
    if vendor == "AuthenticAMD" and family == 25:
        if model is not None and (0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF):
            return "Zen 4"
        return "Zen 3"
    if vendor == "AuthenticAMD" and family == 26:
        return "Zen 5"
    return f"family {family} model {model}" if family is not None else "unknown"


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


def _cpu_busy_s() -> float | None:
    """Seconds all cores spent busy since boot (/proc/stat), to tell how much other jobs ran."""
    try:
        f = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0.0)      # idle + iowait
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


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
    fp32, int8 = CACHE / "cfrnet_training_fp32.onnx", CACHE / "cfrnet_training_int8_v2.onnx"
    if not fp32.is_file() or not int8.is_file():
        import torch
        from training.cfrnet import build
        from training.export_cfrnet import quantize_for_cpu
        from training.onnx_export import export_onnx
        torch.manual_seed(0)
        net = build().eval()
        with torch.no_grad():  # an untrained net is the identity: give its last conv weights
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d) and not m.weight.abs().sum():
                    m.weight.normal_(0, 0.01)
        export_onnx(net, fp32, torch.rand(1, *SHAPE[1:]), {"name": "cfrnet_training_standin"},
                    dynamic_batch=False)
        print("quantising the stand-in as training/export_cfrnet.py does …", flush=True)
        quantize_for_cpu(fp32, int8, face_like_inputs(8, seed=7), {"name": "cfrnet_training_standin"})
    return fp32, int8, "stand-in: training/cfrnet.py's architecture (untrained), exported and quantised here"


# ------------------------------------------------------------------------------ the run ---------

def profile_ops(path: Path, threads: int, x: np.ndarray, runs: int) -> tuple[dict, float]:
    """ONNX Runtime's own profiler on ``runs`` calls: per operator type, the sum over its nodes of
    each node's median kernel time (ms), and the median whole-run time (ms)."""
    import collections

    with tempfile.TemporaryDirectory() as tmp:
        m = OnnxModel(path, threads=threads, profile_prefix=str(Path(tmp) / "prof"))
        for _ in range(3):
            m.run1(x)
        walls = [_timed(lambda: m.run1(x)) * 1e3 for _ in range(runs)]
        events = json.loads(Path(m.session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    op_of: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"] / 1e3)
            op_of[e["name"]] = e["args"]["op_name"]
    by_op: dict[str, float] = collections.defaultdict(float)
    count: dict[str, int] = collections.Counter()
    for name, durs in per_node.items():
        by_op[op_of[name]] += statistics.median(durs[-runs:])
        count[op_of[name]] += 1
    return {op: (ms, count[op]) for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])}, statistics.median(walls)


def run_pair(models: list[OnnxModel], x: np.ndarray) -> None:
    """Two faces at once: one 1-thread session per face, each in its own thread (ONNX Runtime
    releases the GIL while it runs), as a batch of faces can be restored."""
    import threading

    ts = [threading.Thread(target=m.run1, args=(x,)) for m in models]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--stand-in", choices=["paper", "training"], default=None,
                    help="time a stand-in even if models/ has CFRNet: 'paper' (the CFRNet paper's "
                    "8.5 GMAC network rebuilt) or 'training' (training/cfrnet.py's architecture)")
    ap.add_argument("--also-int8", type=Path, action="append", default=[], metavar="PATH",
                    help="another INT8 file to interleave with the others (e.g. an earlier export), "
                    "at 1 and 2 threads; may be repeated")
    ap.add_argument("--profile", type=int, default=0, metavar="RUNS",
                    help="then profile each model at 1 and 2 threads over RUNS calls (ONNX Runtime's "
                    "profiler): time per operator type")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    cpu = cpu_info()
    fp32_path, int8_path, source = models(args)
    macs = analyse_model(fp32_path, SHAPE).macs
    clock = estimate_clock(cpu["fp32_fma_per_cycle"])
    x = face_like_inputs(1, seed=3)[0]

    paths = {"FP32": fp32_path, "INT8": int8_path}
    for p in args.also_int8:
        paths[f"INT8 {p.name}"] = p
    variants = {}
    for label, path in paths.items():
        for t in (1, 2):
            variants[(label, t)] = OnnxModel(path, threads=t)
    for label in ("FP32", "INT8"):   # ONNX Runtime's default, which OnnxModel turns off
        variants[(f"{label} spinning", 2)] = OnnxModel(paths[label], threads=2, spinning=True)
    pair = [OnnxModel(int8_path, threads=1) for _ in range(2)]
    calls = {k: (lambda m=m: m.run1(x)) for k, m in variants.items()}
    calls[("INT8 2 faces at once", 2)] = lambda: run_pair(pair, x)
    for f in calls.values():
        for _ in range(args.warmup):
            f()
    busy0, own0, wall0 = _cpu_busy_s(), time.process_time(), time.perf_counter()
    times = {k: [] for k in calls}
    cpu_times = {k: [] for k in calls}   # process CPU time: what the run cost, not the waiting
    keys = list(calls)
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]  # rotate who goes first
        for k in order:
            c0 = time.process_time()
            times[k].append(_timed(calls[k]) * 1e3)
            cpu_times[k].append((time.process_time() - c0) * 1e3)

    busy1, own, wall = _cpu_busy_s(), time.process_time() - own0, time.perf_counter() - wall0
    others = (max(0.0, busy1 - busy0 - own) / wall) if busy0 is not None and busy1 is not None else float("nan")

    def med(v):
        return statistics.median(v)

    def spread(v):
        q = statistics.quantiles(v, n=10)
        return q[0], q[-1]

    def per_round(a, b):
        return [i / j for i, j in zip(times[a], times[b])]

    floor_ms = {t: macs / (t * cpu["int8_macs_per_cycle"] * clock["clock_ghz"] * 1e9) * 1e3
                for t in (1, 2)}

    print(f"\nCFRNet per cycle, 256×256 — {source}")
    print(f"machine: {cpu['model']} ({cpu['vendor']}, {cpu['uarch']}: cpu family {cpu['family']} model "
          f"{cpu['model_number']}), {cpu['cores']} cores available, "
          f"AVX2 {'yes' if cpu['avx2'] else 'no'}, AVX-512 {'yes' if cpu['avx512f'] else 'no'}, "
          f"VNNI: {', '.join(cpu['flags_vnni']) or 'none'}; onnxruntime {ort.__version__}, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"model: {macs / 1e9:.3f} GMAC per cycle (app.core.npu.analyse_model of the FP32 file), "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up runs each; other processes "
          f"used {others:.2f} of the {cpu['cores']} cores on average during the timed rounds "
          f"(/proc/stat busy time less this process's)\n")
    print("| variant | median ms | p10–p90 ms | best ms | INT8 floor ms | median × floor | best × floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (p, t) in keys:
        v = times[(p, t)]
        lo, hi = spread(v)
        is8 = p.startswith("INT8")
        n = 2 if p == "INT8 2 faces at once" else 1
        fl = f"{n * floor_ms[t]:.1f}" if is8 else ""
        xf = f"{med(v) / (n * floor_ms[t]):.2f}" if is8 else ""
        xb = f"{min(v) / (n * floor_ms[t]):.2f}" if is8 else ""
        name = (f"{p}: 2 sessions × 1 thread, both faces" if n == 2 else
                f"{p} {t} thread{'s' if t > 1 else ''}")
        print(f"| {name} | {med(v):.1f} | {lo:.1f}–{hi:.1f} | {min(v):.1f} | {fl} | {xf} | {xb} |")
    print()
    c1 = {p: med(cpu_times[(p, 1)]) for p in paths}
    print("1-thread runs by process CPU time (excludes time spent waiting for a core, so less hit by "
          "the other jobs): " + ", ".join(
              f"{p} {c1[p]:.1f} ms" + (f" = {c1[p] / floor_ms[1]:.2f}× the floor" if p.startswith("INT8") else "")
              for p in paths))
    print()
    ratios = {}
    for p in paths:
        if not p.startswith("INT8"):
            continue
        for t in (1, 2):
            r = per_round(("FP32", t), (p, t))
            ratios[f"{p} speed-up over FP32 {t}t"] = r
        ratios[f"{p} 2-thread / 1-thread"] = per_round((p, 1), (p, 2))
        if (f"{p} spinning", 2) in times:
            ratios[f"{p} 2 threads: not spinning / spinning"] = per_round((f"{p} spinning", 2), (p, 2))
        if p != "INT8":
            ratios[f"INT8 (models/) speed-up over {p}, 1 thread"] = per_round((p, 1), ("INT8", 1))
            ratios[f"INT8 (models/) speed-up over {p}, 2 threads"] = per_round((p, 2), ("INT8", 2))
    ratios["FP32 2-thread / 1-thread"] = per_round(("FP32", 1), ("FP32", 2))
    ratios["FP32 2 threads: not spinning / spinning"] = per_round(("FP32 spinning", 2), ("FP32", 2))
    ratios["INT8 2 faces at once (2 × 1 thread) / 1 face 1 thread, per face"] = [
        2 * a / b for a, b in zip(times[("INT8", 1)], times[("INT8 2 faces at once", 2)])]
    for name, r in ratios.items():
        lo, hi = spread(r)
        print(f"{name}: {med(r):.2f}× (per-round p10–p90 {lo:.2f}–{hi:.2f})")
    print(f"\nINT8 floor: {macs / 1e9:.3f} GMAC ÷ (threads × {cpu['int8_macs_per_cycle']} int8 MAC/cycle/core "
          f"[{cpu['int8_instruction']}, {cpu['uarch']}] × {clock['clock_ghz']:.2f} GHz)")
    print(f"  clock estimated from a measured FP32 kernel: best of 200 1-thread ONNX Runtime MatMul "
          f"{clock['gemm_n']}³ = {clock['gemm_best_ms']:.2f} ms = {clock['fp32_gmac_per_s']:.1f} GMAC/s, "
          f"÷ {cpu['fp32_fma_per_cycle']} FP32 FMA/cycle/core = {clock['clock_ghz']:.2f} GHz"
          + (f" (/proc/cpuinfo reports {cpu['cpuinfo_mhz'] / 1000:.2f} GHz)" if cpu["cpuinfo_mhz"] else ""))
    target = 2.5 if cpu["flags_vnni"] else 1.8
    sp1 = med(ratios["INT8 speed-up over FP32 1t"])
    print(f"  targets (DESIGN §7): INT8 ≥ {target}× FP32 on this {'VNNI' if cpu['flags_vnni'] else 'AVX2'} "
          f"CPU: {'met' if sp1 >= target else 'NOT met'} at 1 thread; within 1.15× of the floor at "
          f"1 thread: {'met' if med(times[('INT8', 1)]) <= 1.15 * floor_ms[1] else 'NOT met'} (median), "
          f"{'met' if min(times[('INT8', 1)]) <= 1.15 * floor_ms[1] else 'NOT met'} (best)")
    print(f"  load average at the end {os.getloadavg()[0]:.2f} on {cpu['cores']} cores: medians and "
          f"best-of are both shown because other jobs share these cores")

    profiles = {}
    if args.profile:
        print(f"\nPer operator type (ONNX Runtime profiler, {args.profile} calls; per node the median "
              "kernel time, summed by type; ms):")
        for label, path in paths.items():
            for t in (1, 2):
                ops, wall = profile_ops(path, t, x, args.profile)
                profiles[f"{label} {t}t"] = {"wall_ms": wall, "ops": ops}
                total = sum(ms for ms, _ in ops.values())
                print(f"- {label} {t} thread{'s' if t > 1 else ''}: run {wall:.2f} ms, kernels {total:.2f} ms = "
                      + ", ".join(f"{op} {ms:.2f} ({n})" for op, (ms, n) in ops.items()))
    if args.json:
        args.json.write_text(json.dumps({
            "source": source, "macs": macs, "cpu": cpu, "clock": clock, "floor_ms": floor_ms,
            "times_ms": {f"{p}_{t}t": v for (p, t), v in times.items()},
            "cpu_times_ms": {f"{p}_{t}t": v for (p, t), v in cpu_times.items()},
            "ratios": {k: med(v) for k, v in ratios.items()}, "profiles": profiles,
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
