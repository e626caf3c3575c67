"""NPU profiles: data files (``profiles/*.json``) holding each NPU's peak, utilisation, bandwidth,
on-chip buffer and overheads, with the sources they come from, the assumptions made where no
source exists, and the published figures they are calibrated against."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import CfrError

__all__ = ["NpuProfile", "list_profiles", "load_profile", "PROFILE_DIR"]

PROFILE_DIR = Path(__file__).with_name("profiles")


@dataclass(frozen=True)
class NpuProfile:
    name: str                       # file stem: 'hi3402', 'ethos-n78'
    display_name: str
    peak_tops: float                # int8 tera-operations/s (1 MAC = 2 ops)
    utilisation: float              # fraction of peak a well-shaped conv layer reaches
    dram_gb_per_s: float            # DRAM bandwidth available to the NPU (1 GB = 1e9 bytes)
    sram_kib: float                 # on-chip buffer for feature maps and weights
    parallel_out: int               # output channels the MAC array computes at once
    parallel_in: int                # input channels it sums at once
    vector_gelem_per_s: float       # element-wise / data-movement rate (G elements/s)
    layer_overhead_us: float        # fixed cost of each layer (setup, pipeline fill)
    tile_overhead_us: float         # each extra column tile of a layer
    inference_overhead_us: float    # fixed cost of one inference (command stream, sync)
    activation_bytes: float = 1.0   # int8 feature maps
    weight_bytes: float = 1.0       # int8 weights
    transpose_conv: str = "zero_insertion"   # 'direct' | 'zero_insertion' | 'zero_insertion_dram'
    rearrange_in_dram: bool = False  # DepthToSpace & co. as separate DRAM-to-DRAM passes
    sources: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    calibration: tuple[dict, ...] = ()
    path: Path | None = field(default=None, compare=False)

    @property
    def peak_macs_per_s(self) -> float:
        return self.peak_tops * 1e12 / 2.0

    @property
    def dram_bytes_per_s(self) -> float:
        return self.dram_gb_per_s * 1e9

    @property
    def sram_bytes(self) -> float:
        return self.sram_kib * 1024.0

    @property
    def vector_elements_per_s(self) -> float:
        return self.vector_gelem_per_s * 1e9

    def replace(self, **changes) -> "NpuProfile":
        from dataclasses import replace
        return replace(self, **changes)


def list_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name: str | Path) -> NpuProfile:
    """A profile by name ('hi3402', 'ethos-n78') or by the path of a JSON file."""
    path = Path(name)
    if not path.suffix:
        path = PROFILE_DIR / f"{name}.json"
    if not path.is_file():
        raise CfrError(f"{path}: no such NPU profile (known: {', '.join(list_profiles())})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CfrError(f"{path}: not a readable NPU profile ({exc})") from exc
    known = set(NpuProfile.__dataclass_fields__) - {"name", "path"}
    params = {k: v for k, v in data.get("parameters", {}).items() if k in known}
    missing = [k for k in ("peak_tops", "utilisation", "dram_gb_per_s", "sram_kib",
                           "parallel_out", "parallel_in", "vector_gelem_per_s",
                           "layer_overhead_us", "tile_overhead_us", "inference_overhead_us")
               if k not in params]
    if missing:
        raise CfrError(f"{path}: NPU profile lacks {', '.join(missing)}")
    return NpuProfile(
        name=path.stem, display_name=data.get("display_name", path.stem),
        sources=tuple(data.get("sources", ())), assumptions=tuple(data.get("assumptions", ())),
        calibration=tuple(data.get("calibration", ())), path=path, **params,
    )
