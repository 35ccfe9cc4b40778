"""Hardware profiles and the roofline estimate: the time an op takes at best.

A profile is a device's peak dense FLOP/s per dtype and its memory bandwidth, from the vendor's
datasheet (cited on each). The estimate of a layer is the roofline model's (Williams, Waterman
and Patterson, "Roofline", CACM 2009)::

    time = max(FLOPs / peak FLOP/s, bytes moved / bandwidth)

with bytes moved as fxcost counts them (every op reads its tensor arguments and writes its
outputs, views free: no fusion, no cache reuse). It assumes no kernel launch overhead, perfect
overlap of compute and memory traffic and the datasheet's peaks: a lower bound on the time, an
upper bound on the speed a real kernel reaches.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fxcost.report.records import Hardware


@dataclass(frozen=True)
class Device:
    """A device's peak dense FLOP/s by dtype name and its memory bandwidth (bytes/s)."""

    name: str
    peak_flops: dict[str, float]
    bandwidth_bytes_s: float
    source: str = ""
    memory_bytes: int = 0

    def peak(self, dtype: str) -> float:
        """The peak FLOP/s for ``dtype`` (float16 and bfloat16 run at the same rate on every
        profile here; a dtype the profile lacks runs at float32's)."""
        return self.peak_flops.get(dtype) or self.peak_flops["float32"]

    def at(self, dtype: str) -> Hardware:
        """The device as a report records it: its peak at ``dtype``, its bandwidth, its source."""
        return Hardware(self.name, dtype, self.peak(dtype), self.bandwidth_bytes_s, self.source)


#: the named profiles: dense (no structured sparsity) tensor-core peaks for 16-bit types,
#: the plain FP32 (non-tensor-core) peak for float32, as PyTorch runs float32 matmuls by default
DEVICES: dict[str, Device] = {
    "h100": Device(
        "h100", {"bfloat16": 989.4e12, "float16": 989.4e12, "float32": 67e12}, 3.35e12,
        source="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column: BF16/FP16 Tensor Core 1,979 TFLOPS with "
               "sparsity (989.4 dense, the H100 whitepaper), FP32 67 TFLOPS, GPU memory bandwidth 3.35 TB/s, 80 GB",
        memory_bytes=80 * 10**9),
    "h200": Device(
        "h200", {"bfloat16": 989.4e12, "float16": 989.4e12, "float32": 67e12}, 4.8e12,
        source="NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column: BF16/FP16 Tensor Core 1,979 TFLOPS with "
               "sparsity (989.4 dense, the H100 whitepaper), FP32 67 TFLOPS, GPU memory bandwidth 4.8 TB/s, 141 GB",
        memory_bytes=141 * 10**9),
    "a100-80g": Device(
        "a100-80g", {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}, 2.039e12,
        source="NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM column: BF16/FP16 Tensor Core 312 TFLOPS "
               "(624 with sparsity), FP32 19.5 TFLOPS, GPU memory bandwidth 2,039 GB/s, 80 GB",
        memory_bytes=80 * 10**9),
    "l4": Device(
        "l4", {"bfloat16": 121e12, "float16": 121e12, "float32": 30.3e12}, 300e9,
        source="NVIDIA L4 Tensor Core GPU datasheet: BF16/FP16 Tensor Core 242 TFLOPS with sparsity (121 dense), "
               "FP32 30.3 TFLOPS, GPU memory bandwidth 300 GB/s, 24 GB",
        memory_bytes=24 * 10**9),
    "mi300x": Device(
        "mi300x", {"bfloat16": 1307.4e12, "float16": 1307.4e12, "float32": 163.4e12}, 5.3e12,
        source="AMD Instinct MI300X accelerator datasheet: peak BF16/FP16 1,307.4 TFLOPS dense (2,614.9 with "
               "sparsity), peak FP32 matrix 163.4 TFLOPS, peak memory bandwidth 5.3 TB/s, 192 GB HBM3",
        memory_bytes=192 * 10**9),
    "cpu": Device(
        "cpu", {"bfloat16": 114.7e12, "float16": 7.17e12, "float32": 7.17e12}, 307.2e9,
        source="Intel Xeon Platinum 8480+ (one socket), from Intel's specifications by arithmetic: 56 cores at the "
               "2.0 GHz base clock; FP32 56 x 2.0 GHz x 2 AVX-512 FMA units x 16 lanes x 2 = 7.17 TFLOPS; BF16 "
               "on AMX 56 x 2.0 GHz x 1,024 = 114.7 TFLOPS; 8 channels of DDR5-4800 x 38.4 GB/s = 307.2 GB/s (a "
               "generous peak: AVX-512 and AMX clocks fall below the base clock under load)"),
}

_FIELDS = ("name", "bandwidth_bytes_s", "peak_flops")


def device(spec: str) -> Device:
    """A named profile, or a TOML file of one::

        name = "my-gpu"
        bandwidth_bytes_s = 2.0e12
        memory_bytes = 80e9           # optional
        source = "its datasheet"      # optional
        [peak_flops]
        float32 = 60e12
        bfloat16 = 900e12
    """
    from fxcost.errors import InputSpecError

    if spec.lower() in DEVICES:
        return DEVICES[spec.lower()]
    path = Path(spec)
    if not spec.endswith(".toml"):
        raise InputSpecError(f"unknown device {spec!r}",
                             hint=f"one of: {', '.join(DEVICES)}, or a profile file path/to/device.toml")
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputSpecError(f"cannot read the device profile {spec}: {e}",
                             hint="a TOML file with name, bandwidth_bytes_s and a [peak_flops] table") from None
    missing = [f for f in _FIELDS if f not in data]
    peaks = data.get("peak_flops", {})
    if not missing and (not isinstance(peaks, dict) or "float32" not in peaks):
        missing.append("peak_flops.float32")
    if missing:
        raise InputSpecError(f"the device profile {spec} lacks {', '.join(missing)}",
                             hint="a TOML file with name, bandwidth_bytes_s and a [peak_flops] table with float32 "
                                  "(and bfloat16, float16 where the device has them)")
    try:
        return Device(str(data["name"]), {str(k): float(v) for k, v in peaks.items()}, float(data["bandwidth_bytes_s"]),
                      source=str(data.get("source", spec)), memory_bytes=int(float(data.get("memory_bytes", 0))))
    except (TypeError, ValueError) as e:
        raise InputSpecError(f"the device profile {spec} has a value that is not a number: {e}",
                             hint="peaks in FLOP/s and bandwidth in bytes/s, as numbers (2.0e12)") from None
