"""What the device supports, and the execution settings ``fast`` resolves to there.

The rule follows the measurements in benchmarks/README.md (LeNet-5 PGD training and
evaluation, ratios to the paper's torchattacks loop in one process):

- a CPU with native bf16 (AVX512-BF16 or AMX, and oneDNN allowed to use it): bf16 autocast,
  channels-last weights, attacks on the BatchNorm-folded view;
- any other CPU (e.g. AVX2 only): fp32, channels-last weights, the folded view. bf16 is
  emulated there, several times slower than fp32 (`EMULATED_BF16_COST`);
- a CUDA GPU: the same plus CUDA graphs, bf16 where the GPU supports it.

``torch.compile`` is never chosen: it did not pay on CPUs and made GPU epochs slower.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Measured on an AMD EPYC limited to AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
# NUMBA_CPU_NAME=haswell), 1 torch thread, LeNet-5 PGD-40 training, CPU time, bf16 + channels_last +
# fold BN against plain fp32 and against fp32 + channels_last + fold BN (benchmarks/results/training_avx2.md).
EMULATED_BF16_COST = "2.7x slower than plain fp32 and 4.9x slower than fp32 with --channels-last --fold-batchnorm"


@dataclass(frozen=True)
class Hardware:
    """The facts about a device that decide its fastest settings.

    ``capability``: torch's CPU kernel level (``torch.backends.cpu.get_cpu_capability()``:
    ``AVX2``, ``AVX512``, ...; limited by ``ATEN_CPU_CAPABILITY``) or the GPU's name.
    ``native_bf16``: bf16 arithmetic runs in hardware: on CPUs, AVX512-BF16 or AMX instructions
    that oneDNN may use (``ONEDNN_MAX_CPU_ISA`` can forbid them); on GPUs, bf16 support.
    """

    device_type: str
    capability: str
    native_bf16: bool
    amx: bool = False

    def describe(self) -> str:
        """One line naming the capabilities, for reports and warnings."""
        if self.device_type != "cpu":
            return f"{self.device_type} {self.capability}, bf16 {'supported' if self.native_bf16 else 'unsupported'}"
        bf16 = "AMX" if self.amx and self.native_bf16 else "AVX512-BF16" if self.native_bf16 else "none (emulated)"
        return f"CPU capability {self.capability}, native bf16: {bf16}"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags from `cpuinfo` (Linux), or an empty set where it cannot be read."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@functools.cache
def detect_hardware(device_type: str = "cpu") -> Hardware:
    """The `Hardware` of this machine's CPU or (``cuda``) current GPU."""
    if device_type == "cuda":
        return Hardware("cuda", torch.cuda.get_device_name(), torch.cuda.is_bf16_supported())
    flags = cpu_flags()
    amx = "amx_bf16" in flags or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    bf16_instructions = amx or "avx512_bf16" in flags or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    capability = torch.backends.cpu.get_cpu_capability()
    # oneDNN runs the convolutions: its own ISA limit decides whether it may use bf16 instructions
    onednn_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    native = bool(bf16_instructions and onednn_bf16 and capability.startswith("AVX512"))
    return Hardware("cpu", capability, native, amx=bool(amx))


def fast_settings(hardware: Hardware) -> dict[str, Any]:
    """The execution settings (`RunConfig` fields) that ``fast`` resolves to on `hardware`."""
    gpu = hardware.device_type == "cuda"
    return {
        "precision": "bf16" if hardware.native_bf16 else "fp32",
        "channels_last": True,
        "fold_batchnorm": True,
        "compile": False,
        "cuda_graphs": gpu,
    }


def emulated_bf16_warning(hardware: Hardware) -> str | None:
    """The warning for asking bf16 on `hardware`, or None when bf16 runs natively there."""
    if hardware.native_bf16 or hardware.device_type != "cpu":
        return None
    return (
        f"precision bf16 on a CPU without native bf16 ({hardware.describe()}) is emulated: measured "
        f"{EMULATED_BF16_COST} for LeNet-5 adversarial training; use fp32, or --fast, which picks "
        "the fastest settings for this CPU"
    )
