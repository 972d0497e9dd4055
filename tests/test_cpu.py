"""bfloat16 autocast on the CPU: on where the CPU has bfloat16 instructions, as configured."""

from __future__ import annotations

import pytest

from cxr_augment import cpu


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n", False),  # no AVX-512 at all
        ("processor\t: 0\nflags\t\t: avx512f avx512bw avx512_vnni\n", False),  # AVX-512, no BF16
        ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n", True),  # Arm
        ("processor\t: 0\nFeatures\t: fp asimd sve\n", False),
    ],
)
def test_native_bf16_reads_the_cpu_flags(tmp_path, monkeypatch, cpuinfo, native):
    info = tmp_path / "cpuinfo"
    info.write_text(cpuinfo)
    real = cpu.Path

    monkeypatch.setattr(cpu, "Path", lambda p: info if p == "/proc/cpuinfo" else real(p))
    cpu.native_bf16.cache_clear()
    try:
        assert cpu.native_bf16() is native
        assert cpu.use_bf16_cpu("auto") is native
        assert cpu.use_bf16_cpu(True) is True
        assert cpu.use_bf16_cpu(False) is False
    finally:
        cpu.native_bf16.cache_clear()


def test_no_cpuinfo_means_no_bf16_an_unreadable_one_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "Path", lambda p: tmp_path / "absent")  # macOS, Windows
    cpu.native_bf16.cache_clear()
    try:
        assert cpu.native_bf16() is False
        cpu.native_bf16.cache_clear()
        (tmp_path / "folder").mkdir()
        monkeypatch.setattr(cpu, "Path", lambda p: tmp_path / "folder")  # exists, unreadable
        with pytest.raises(OSError):
            cpu.native_bf16()
    finally:
        cpu.native_bf16.cache_clear()
    with pytest.raises(ValueError, match="bf16_cpu must be auto, true or false"):
        cpu.use_bf16_cpu("yes")


def test_training_autocasts_only_where_the_setting_resolves_on(monkeypatch):
    import torch

    from cxr_augment.classify.training import TrainConfig, _autocast

    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    with _autocast(torch.device("cpu"), TrainConfig(bf16_cpu="auto")):
        assert not torch.is_autocast_enabled("cpu")
    with _autocast(torch.device("cpu"), TrainConfig(bf16_cpu=True)):
        assert torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    with _autocast(torch.device("cpu"), TrainConfig(bf16_cpu="auto")):
        assert torch.is_autocast_enabled("cpu")


def test_the_reports_provenance_says_whether_the_cpu_trains_in_bfloat16(tmp_path, monkeypatch):
    from cxr_augment.datasets.report_datasets import ProvenanceDataset

    for native in (True, False):
        monkeypatch.setattr(
            "cxr_augment.datasets.report_datasets.native_bf16", lambda native=native: native
        )
        info = ProvenanceDataset(root=str(tmp_path)).load()
        assert info["cpu_bfloat16_instructions"] == ("yes" if native else "no")
