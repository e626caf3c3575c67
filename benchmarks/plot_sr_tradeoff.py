"""PSNR against MACs: every super-resolution model we ship beside the published points.

    python benchmarks/plot_sr_tradeoff.py                       # evaluates models/*_x2_*.onnx
    python benchmarks/plot_sr_tradeoff.py --results eval.json   # reuse `training.sr_eval --json`

One panel per test set (Set5, Set14, B100; Y PSNR by ``training.sr_eval``'s standard protocol),
x = MACs for a 1280×720 output (the FALSR/CARN/SESR convention: ``macs_per_input_pixel`` from
each model's metadata × 640×360 LR pixels at ×2), log scale. Published points come from
``../shared/data/sr/PUBLISHED.md`` (rows with a Mult-Adds figure and a PSNR; "~" values read off a
plot are drawn hollow; bicubic is a dashed line). Prints the table it plots. Writes a PNG (default
``benchmarks/sr_tradeoff_x2.png``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.onnx_session import OnnxModel  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
SETS = ("Set5", "Set14", "B100")
HR_720P = 1280 * 720


def _number(text: str) -> tuple[float | None, bool]:
    """'37.00/0.9558' → (37.00, exact); '~32.84 / ?' → (32.84, approximate); '?' → (None, _)."""
    m = re.search(r"(~)?\s*(\d+(?:\.\d+)?)", text)
    if not m:
        return None, False
    return float(m.group(2)), not m.group(1)


def _macs(text: str) -> float | None:
    m = re.search(r"(\d[\d,]*(?:\.\d+)?)\s*G", text)
    return float(m.group(1).replace(",", "")) * 1e9 if m else None


def published_points(path: Path, scale: int = 2) -> list[dict]:
    """Rows of the ×``scale`` table of PUBLISHED.md with MACs and at least one PSNR."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == f"## x{scale}")
    except StopIteration:
        raise SystemExit(f"{path}: no '## x{scale}' section") from None
    header, points = None, []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(cells[0]) <= set("-: "):
            continue
        row = dict(zip(header, cells))
        macs = _macs(row.get("Mult-Adds / MACs", ""))  # None for bicubic: drawn as a line
        psnr = {}
        for s in SETS:
            value, exact = _number(row.get(s, "?"))
            if value is not None:
                psnr[s] = (value, exact)
        if psnr:
            points.append({"name": row["Model"].split(" (")[0], "macs": macs, "psnr": psnr})
    return points


def shipped_models(models_dir: Path, scale: int) -> list[Path]:
    return sorted(models_dir.glob(f"*_x{scale}_*.onnx"))


def our_points(paths: list[Path], scale: int, sets, data: Path, results: Path | None) -> list[dict]:
    from training.sr_eval import evaluate

    if results is not None:
        table = json.loads(results.read_text())
        psnr_of = {(r["model"], r["set"]): r["psnr"] for r in table if r["scale"] == scale}
    else:
        found = evaluate({p.stem: p for p in paths}, scale, sets, data, bicubic=False, threads=1,
                         progress=lambda s: print(s, file=sys.stderr, flush=True))
        psnr_of = {(r.model, r.set): r.psnr for r in found}
    points = []
    for p in paths:
        meta = OnnxModel(p, threads=1).metadata
        per_px = float(meta.get("macs_per_input_pixel", "nan"))
        psnr = {s: (psnr_of[(p.stem, s)], True) for s in sets if (p.stem, s) in psnr_of}
        if psnr:
            points.append({"name": p.stem, "macs": per_px * HR_720P / scale**2, "psnr": psnr,
                           "trained_hours": meta.get("trained_hours")})
    return points


def plot(ours: list[dict], published: list[dict], sets, out: Path, scale: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.4), squeeze=False)
    for ax, s in zip(axes[0], sets):
        for p in published:
            if s not in p["psnr"]:
                continue
            v, exact = p["psnr"][s]
            if p["macs"] is None:
                ax.axhline(v, color="0.5", linestyle="--", linewidth=0.8, zorder=1)
                ax.annotate(p["name"], (0.01, v), xycoords=("axes fraction", "data"), fontsize=7,
                            color="0.3", xytext=(0, 3), textcoords="offset points")
                continue
            ax.scatter(p["macs"] / 1e9, v, s=28, marker="o", edgecolors="0.3",
                       facecolors="0.55" if exact else "none", zorder=2)
            ax.annotate(p["name"], (p["macs"] / 1e9, v), fontsize=7, color="0.3",
                        xytext=(3, -9), textcoords="offset points")
        for i, p in enumerate(ours):
            if s not in p["psnr"]:
                continue
            v = p["psnr"][s][0]
            ax.scatter(p["macs"] / 1e9, v, s=90, marker="*", color=f"C{i % 10}", zorder=3,
                       label=f"{p['name']} (ours" + (f", {p['trained_hours']} h CPU)" if p.get("trained_hours") else ")"))
        ax.set_xscale("log")
        ax.set_xlabel(f"MACs for a 1280×720 output (G), ×{scale}")
        ax.set_ylabel(f"{s} Y PSNR (dB)")
        ax.set_title(s)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(handles)), fontsize=8)
    fig.suptitle("Super-resolution ×%d: PSNR vs MACs — ours (stars) vs published (grey; hollow = read off a plot)"
                 % scale, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--models", type=Path, nargs="*", default=None,
                    help="ONNX files (default: every models/*_x<scale>_*.onnx)")
    ap.add_argument("--results", type=Path, default=None, help="JSON from `training.sr_eval --json`")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--published", type=Path, default=None, help="default: <data>/sr/PUBLISHED.md")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    paths = args.models if args.models else shipped_models(ROOT / "models", args.scale)
    published = published_points(args.published or args.data / "sr" / "PUBLISHED.md", args.scale)
    ours = our_points(paths, args.scale, args.sets, args.data, args.results)
    out = args.out or ROOT / "benchmarks" / f"sr_tradeoff_x{args.scale}.png"

    print(f"| Model | MACs (720p out) | " + " | ".join(args.sets) + " |")
    print("|---|---|" + "---|" * len(args.sets))
    for p in ours + published:
        tag = "" if p in published else " (ours)"
        cells = [("%.2f" % p["psnr"][s][0] + ("" if p["psnr"][s][1] else "~")) if s in p["psnr"] else "–"
                 for s in args.sets]
        macs = f"{p['macs'] / 1e9:.2f} G" if p["macs"] is not None else "–"
        print(f"| {p['name']}{tag} | {macs} | " + " | ".join(cells) + " |")
    plot(ours, published, args.sets, out, args.scale)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
