"""Whether bfloat16 autocast pays on this CPU.

On a CPU with bfloat16 instructions (x86 AVX-512 BF16 or AMX; Arm's BF16 extension) autocast
speeds training up (1.4x for DenseNet-121 on an AVX-512 BF16 EPYC, ``bench/bench_training.py``).
Without them PyTorch emulates bfloat16 and the same training runs an order of magnitude slower
(on an EPYC without AVX-512, one training step of the demo's diffusion model took 6.1-6.6 s
against 0.45-0.49 s in float32, and of DenseNet-121 at the demo's size 7.2-7.3 s against
0.67-0.68 s), so the training and sampling settings take ``bf16_cpu: auto``: on where the CPU
has the instructions, off elsewhere.
``true`` autocasts on any CPU, ``false`` never.
"""

from __future__ import annotations

import functools
from pathlib import Path

_X86 = {"avx512_bf16", "amx_bf16"}


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when the CPU has bfloat16 instructions, as ``/proc/cpuinfo`` lists them (Linux).
    False on a system without that file (macOS, Windows: float32 on the CPU)."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return False
    text = info.read_text()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "flags" and _X86 & set(value.split()):
            return True
        if key == "features" and "bf16" in value.split():
            return True
    return False


def use_bf16_cpu(setting: bool | str) -> bool:
    """Whether to autocast to bfloat16 on the CPU for ``bf16_cpu``: ``auto`` (where the CPU has
    bfloat16 instructions), ``true`` or ``false``."""
    if isinstance(setting, bool):
        return setting
    if isinstance(setting, str) and setting.lower() == "auto":
        return native_bf16()
    raise ValueError(f"bf16_cpu must be auto, true or false, got {setting!r}")
