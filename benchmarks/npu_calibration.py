"""The NPU simulator against every published figure it is calibrated on (DESIGN §5). Prints a
table; tests/test_npu.py asserts the same ±10 %.

    python benchmarks/npu_calibration.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.npu import simulate  # noqa: E402
from app.core.npu.reference import cfrnet_paper, fsrcnn, sesr  # noqa: E402

HD = (1, 1, 1080, 1920)


def main() -> int:
    f = simulate(fsrcnn(), "ethos-n78", HD)
    s2 = simulate(sesr(), "ethos-n78", HD)
    t2 = simulate(sesr(), "ethos-n78", HD, tile=(300, 400))
    s4 = simulate(sesr(scale=4), "ethos-n78", HD)
    t4 = simulate(sesr(scale=4), "ethos-n78", HD, tile=(300, 400))
    c = simulate(cfrnet_paper(), "hi3402", (1, 3, 256, 256))
    rows = [
        ("Ethos-N78", "FSRCNN ×2 1080p→4K, MACs executed (G)", 54, f.executed_macs / 1e9),
        ("Ethos-N78", "FSRCNN ×2, FPS at 100 % utilisation", 37, f.ideal_fps),
        ("Ethos-N78", "FSRCNN ×2, FPS simulated", 6, f.fps),
        ("Ethos-N78", "SESR-M5 ×2, MACs (G)", 28, s2.macs / 1e9),
        ("Ethos-N78", "SESR-M5 ×2, speed-up over FSRCNN", 6.15, f.per_inference_ms / s2.per_inference_ms),
        ("Ethos-N78", f"SESR-M5 ×2 tiled ({t2.tiles:.2f} tiles), ms", 21.77, t2.per_inference_ms),
        ("Ethos-N78", "SESR-M5 ×2 tiled, FPS", 46, t2.fps),
        ("Ethos-N78", "SESR-M5 ×4 1080p→8K, FPS", 22, s4.fps),
        ("Ethos-N78", "SESR-M5 ×4 tiled, FPS", 27, t4.fps),
        ("Hi3402", "CFRNet (paper's net rebuilt, 8.5 GMAC) 256², ms per cycle", 23, c.per_inference_ms),
    ]
    print("| NPU | figure | published | simulated | error |")
    print("|---|---|---:|---:|---:|")
    for npu, what, target, got in rows:
        print(f"| {npu} | {what} | {target:g} | {got:.2f} | {100 * (got / target - 1):+.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
