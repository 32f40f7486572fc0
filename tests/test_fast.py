"""`fast` resolves per hardware, bf16 without hardware support warns, `robustal speedtest`
decides from its measurements (injected here: no timed assertions)."""

import warnings

import pytest
import torch

import robustal.config
from run_helpers import tiny_settings
from robustal.accel import Execution, Hardware, detect_hardware, fast_settings
from robustal.accel import hardware as hardware_module
from robustal.cli.speedtest import CANDIDATES, candidates, choose
from robustal.config import make_config

AVX2 = Hardware("cpu", "AVX2", native_bf16=False)
AVX512_BF16 = Hardware("cpu", "AVX512", native_bf16=True)
AMX = Hardware("cpu", "AVX512", native_bf16=True, amx=True)
GPU = Hardware("cuda", "NVIDIA H200", native_bf16=True)


@pytest.mark.parametrize(
    "hardware, precision, graphs",
    [(AVX2, "fp32", False), (AVX512_BF16, "bf16", False), (AMX, "bf16", False), (GPU, "bf16", True)],
    ids=["avx2", "avx512-bf16", "amx", "gpu"],
)
def test_fast_resolves_per_hardware(hardware, precision, graphs):
    settings = fast_settings(hardware)
    assert settings == dict(
        precision=precision, channels_last=True, fold_batchnorm=True, compile=False, cuda_graphs=graphs
    )


@pytest.mark.parametrize(
    "capability, flags, onednn_bf16, native",
    [
        ("AVX512", {"avx512f", "avx512_bf16"}, True, True),
        ("AVX2", {"avx2", "avx512_bf16"}, True, False),  # ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU
        ("AVX512", {"avx512f", "avx512_bf16"}, False, False),  # ONEDNN_MAX_CPU_ISA forbids bf16
        ("AVX512", {"avx512f"}, True, False),  # AVX-512 without bf16 instructions
        ("AVX512", {"avx512f", "amx_bf16", "amx_tile"}, True, True),
    ],
)
def test_native_bf16_needs_the_instructions_and_permission_to_use_them(monkeypatch, capability, flags, onednn_bf16, native):
    monkeypatch.setattr(hardware_module, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: "avx512_bf16" in flags, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: "amx_tile" in flags, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_bf16)
    detect_hardware.cache_clear()
    try:
        hardware = detect_hardware("cpu")
    finally:
        detect_hardware.cache_clear()
    assert hardware.capability == capability and hardware.native_bf16 is native
    assert ("emulated" in hardware.describe()) is not native


def on(monkeypatch, hardware: Hardware) -> None:
    monkeypatch.setattr(robustal.config, "detect_hardware", lambda device_type: hardware)


def test_a_fast_config_records_the_resolved_settings_and_its_id_is_theirs(monkeypatch):
    on(monkeypatch, AVX2)
    config = make_config(**tiny_settings(fast=True))
    assert (config.precision, config.channels_last, config.fold_batchnorm, config.cuda_graphs) == ("fp32", True, True, False)
    explicit = make_config(**tiny_settings(channels_last=True, fold_batchnorm=True))
    assert config.run_id() == explicit.run_id()  # `fast` itself is not part of the id
    assert "fast" not in config.identity()
    on(monkeypatch, AVX512_BF16)
    assert make_config(**tiny_settings(fast=True)).precision == "bf16"
    # a stored config is read back as it was recorded, whatever the machine that reads it
    assert make_config(**config.model_dump()) == config
    # settings given explicitly win over what fast would pick
    assert make_config(**tiny_settings(fast=True, precision="fp32")).precision == "fp32"


def test_bf16_on_a_cpu_without_native_bf16_warns_with_the_measured_cost(monkeypatch):
    monkeypatch.setattr("robustal.accel.execution.detect_hardware", lambda device_type: AVX2)
    config = make_config(**tiny_settings(precision="bf16", device="cpu"))
    with pytest.warns(UserWarning, match=r"bf16 on a CPU without native bf16 .* emulated: measured .*slower than fp32"):
        Execution.from_config(config)
    monkeypatch.setattr("robustal.accel.execution.detect_hardware", lambda device_type: AVX512_BF16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Execution.from_config(config).precision == "bf16"  # no warning with native bf16


def test_speedtest_picks_the_fastest_but_bf16_only_with_a_clear_margin():
    settings = candidates("cpu")
    assert set(settings) == set(CANDIDATES) and not any(s.get("cuda_graphs") for s in settings.values())
    assert any(s.get("cuda_graphs") for s in candidates("cuda").values())
    fp32, folded, bf16 = "fp32", "fp32 + channels_last + fold BN", "bf16 + channels_last + fold BN"
    emulated = {fp32: [1.0, 1.1, 0.9], folded: [0.5, 0.45, 0.9], bf16: [2.5, 2.4, 2.6]}
    assert choose(emulated, settings) == folded
    native = {fp32: [1.0], folded: [0.5], bf16: [0.4, 0.41, 0.39]}
    assert choose(native, settings) == bf16
    barely = {fp32: [1.0], folded: [0.5], bf16: [0.47]}  # 6 % faster: not worth changing numerics
    assert choose(barely, settings) == folded
    slow_folding = {fp32: [0.5], folded: [0.6], bf16: [0.7]}  # nothing beats plain fp32
    assert choose(slow_folding, settings) == fp32
