"""What the benchmarks ran on: CPU model, cores, SIMD flags, library versions, and nominal peaks.

`parse_cpuinfo` reads /proc/cpuinfo text; `nominal_peak` turns it into the CPU's theoretical
multiply-accumulate rate for float32 and int8, with the assumption it made spelled out, so the
roofline line can show how far a model is from the hardware limit.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: CPU flags worth printing for SIMD inference (x86 and Arm names).
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
              "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "neon", "asimd", "asimddp")


@dataclass(frozen=True)
class CpuInfo:
    """The facts about the CPU that matter for a nominal peak."""

    model: str
    vendor: str
    family: int | None
    logical_cpus: int
    mhz: float | None
    flags: frozenset[str] = field(default_factory=frozenset)

    def simd_flags(self) -> list[str]:
        return [f for f in SIMD_FLAGS if f in self.flags]


def parse_cpuinfo(text: str) -> CpuInfo:
    """CpuInfo from the text of /proc/cpuinfo (x86 or Arm layout)."""
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    first: dict[str, str] = {}  # the first value of every key (Arm puts Model in a last block)
    for block in blocks:
        for line in block.splitlines():
            key, _, value = line.partition(":")
            first.setdefault(key.strip(), value.strip())
    processors = sum(1 for b in blocks if any(ln.split(":")[0].strip() == "processor"
                                               for ln in b.splitlines()))
    flags = (first.get("flags") or first.get("Features") or "").split()
    mhz = first.get("cpu MHz")
    family = first.get("cpu family")
    return CpuInfo(
        model=(first.get("model name") or first.get("Model") or first.get("Hardware")
               or "unknown"),
        vendor=first.get("vendor_id") or first.get("CPU implementer") or "unknown",
        family=int(family) if family and family.isdigit() else None,
        logical_cpus=max(processors, 1),
        mhz=float(mhz) if mhz else None,
        flags=frozenset(flags),
    )


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """The CPU of this machine (falls back to os.cpu_count() when /proc/cpuinfo is absent)."""
    try:
        return parse_cpuinfo(Path(path).read_text())
    except OSError:
        return CpuInfo(model=platform.processor() or "unknown", vendor="unknown", family=None,
                       logical_cpus=os.cpu_count() or 1, mhz=None)


def macs_per_cycle(cpu: CpuInfo) -> dict[str, Any]:
    """Per-core multiply-accumulates per cycle for float32 and int8, and the assumption made."""
    f = cpu.flags
    # AMD family 25 (Zen 3/4): Zen 4 has AVX-512 but executes it on 256-bit pipes.
    zen = cpu.vendor == "AuthenticAMD" and cpu.family == 25
    if "avx512f" in f and not zen:
        fp32, fp32_why = 32, "AVX-512 + FMA: 2 FMA ports x 16 float32 lanes"
    elif "avx512f" in f:
        fp32, fp32_why = 16, ("AMD Zen 4 AVX-512: 512-bit ops run as 2 x 256-bit halves, "
                              "so 2 FMA pipes x 8 float32 lanes")
    elif "avx2" in f and "fma" in f:
        fp32, fp32_why = 16, "AVX2 + FMA: 2 FMA ports x 8 float32 lanes"
    elif "asimd" in f or "neon" in f:
        fp32, fp32_why = 8, "Arm NEON: 2 x 128-bit FMA pipes x 4 float32 lanes (Cortex-A7x)"
    else:
        fp32, fp32_why = 4, "SSE: 1 x 4 float32 lanes, no FMA"
    if "avx512_vnni" in f and not zen:
        int8, int8_why = 128, "AVX-512 VNNI (VPDPBUSD): 2 ports x 64 int8 MACs"
    elif "avx512_vnni" in f or "avx_vnni" in f:
        int8, int8_why = 64, "VNNI (VPDPBUSD) on 2 x 256-bit pipes: 2 x 32 int8 MACs"
    elif "avx2" in f:
        int8, int8_why = 64, ("AVX2 VPMADDUBSW: 2 ports x 32 int8 products "
                              "(upper bound: accumulation takes extra instructions)")
    elif "asimddp" in f:
        int8, int8_why = 32, "Arm dot product (SDOT): 2 pipes x 16 int8 MACs"
    elif "asimd" in f or "neon" in f:
        int8, int8_why = 16, "Arm NEON without dot product: 2 pipes x 8 int16-widened MACs"
    else:
        int8, int8_why = 16, "SSE4 PMADDUBSW: 1 x 16 int8 products"
    return {"fp32": fp32, "int8": int8, "fp32_assumption": fp32_why,
            "int8_assumption": int8_why}


def nominal_peak(cpu: CpuInfo, cores: int | None = None) -> dict[str, Any]:
    """Nominal GMAC/s for float32 and int8 over `cores` cores (all logical CPUs by default)."""
    cores = cores or cpu.logical_cpus
    per_cycle = macs_per_cycle(cpu)
    ghz = (cpu.mhz or 0.0) / 1000.0
    return {
        "cores": cores,
        "ghz": ghz,
        "fp32_gmacs": cores * ghz * per_cycle["fp32"],
        "int8_gmacs": cores * ghz * per_cycle["int8"],
        **per_cycle,
        "frequency_assumption": "the clock /proc/cpuinfo reports (turbo, if any, not counted)",
    }


def _version(module: str, attribute: str = "__version__") -> str:
    try:
        return str(getattr(importlib.import_module(module), attribute))
    except Exception:  # not installed or broken: say so in the report
        return "not installed"


def library_versions(with_tensorflow: bool = True) -> dict[str, str]:
    """Versions of the libraries a benchmark number depends on."""
    versions = {
        "python": sys.version.split()[0],
        "numpy": _version("numpy"),
        "opencv": _version("cv2"),
        "ai-edge-litert": _package_version("ai-edge-litert"),
        "tflite-runtime": _package_version("tflite-runtime"),
        "matplotlib": _package_version("matplotlib"),
    }
    if with_tensorflow:
        versions["tensorflow"] = _version("tensorflow")
        versions["keras"] = _version("keras")
    return versions


def _package_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(with_tensorflow: bool = True) -> dict[str, Any]:
    """Everything the report says about where it ran."""
    cpu = read_cpuinfo()
    info = asdict(cpu)
    info["flags"] = cpu.simd_flags()
    return {
        "cpu": info,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "versions": library_versions(with_tensorflow),
        "peak": nominal_peak(cpu),
        "peak_1core": nominal_peak(cpu, cores=1),
    }
