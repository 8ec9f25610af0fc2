"""What this machine is: CPU instruction sets, torch/CUDA/cuDNN/Ray versions, devices."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_isa", "platform_info"]

# oneDNN's names for ONEDNN_MAX_CPU_ISA, in rising order, mapped to the ISA they cap at.
_ONEDNN_CAPS = {"SSE41": "SSE4.1", "AVX": "AVX", "AVX2": "AVX2", "AVX2_VNNI": "AVX2", "AVX2_VNNI_2": "AVX2",
                "AVX512_CORE": "AVX-512", "AVX512_CORE_VNNI": "AVX-512", "AVX512_CORE_BF16": "AVX-512",
                "AVX10_1_512": "AVX-512", "AVX512_CORE_FP16": "AVX-512", "AVX512_CORE_AMX": "AMX",
                "AVX10_1_512_AMX": "AMX", "AVX512_CORE_AMX_FP16": "AMX", "AVX10_1_512_AMX_FP16": "AMX",
                "DEFAULT": None, "ALL": None}
_ORDER = ["SSE4.1", "AVX", "AVX2", "AVX-512", "AMX"]


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_isa() -> dict[str, Any]:
    """The CPU's vector instruction sets and the one oneDNN will use.

    Returns a dict with ``hardware`` (highest of SSE4.1/AVX/AVX2/AVX-512/AMX the CPU reports),
    ``flags`` (the AVX/AMX flags seen), ``onednn_cap`` (``ONEDNN_MAX_CPU_ISA`` if set),
    ``effective`` (what oneDNN's kernels run: the hardware level, capped by that variable) and
    ``aten`` (the kernel level PyTorch's own CPU ops dispatch to). Off Linux, ``hardware`` comes
    from PyTorch's own detection.
    """
    flags = _cpu_flags()
    found = [f for f in sorted(flags) if f.startswith(("avx", "amx"))]
    aten = torch.backends.cpu.get_cpu_capability()
    if flags:
        hw = ("AMX" if "amx_tile" in flags else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags
              else "AVX" if "avx" in flags else "SSE4.1" if "sse4_1" in flags else "older")
    else:
        hw = {"AVX512": "AVX-512", "AVX2": "AVX2"}.get(aten, aten)
    cap_name = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    cap = _ONEDNN_CAPS.get(cap_name.upper()) if cap_name else None
    effective = hw
    if cap is not None and hw in _ORDER and _ORDER.index(cap) < _ORDER.index(hw):
        effective = cap
    return {"hardware": hw, "flags": found, "onednn_cap": cap_name, "effective": effective, "aten": aten}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def platform_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Versions and hardware facts for a report: torch, the device's name, CPU ISA, threads, CUDA, cuDNN, Ray."""
    from nasbench.hardware._profile import device_name

    device = torch.device(device)
    isa = cpu_isa()
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "cpu": device_name("cpu"),
        "cpu_isa": isa["effective"] + (f" (capped from {isa['hardware']} by ONEDNN_MAX_CPU_ISA)"
                                       if isa["effective"] != isa["hardware"] else ""),
        "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "ray": _version("ray"),
    }
    if device.type == "cuda":
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
    return info
