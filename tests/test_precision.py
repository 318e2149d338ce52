"""`licodec.precision`: which precision ``--precision auto`` trains in, by the CPU's flags."""

import pytest

from licodec import precision


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "fma"}, "fp32"),                                  # Zen 3: bf16 emulated, 8x slower
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),               # Zen 4: AVX512-BF16
    ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bf16"),  # Sapphire Rapids: AMX-BF16
    ({"avx512f", "avx512_vnni"}, "fp32"),                       # AVX-512 without bf16 instructions
    (set(), "fp32"),                                            # flags unknown (not Linux)
])
def test_auto_follows_the_cpus_bf16_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert precision.resolve_precision("auto", "cpu") == expected


def test_explicit_precision_is_kept_and_unknown_ones_are_refused(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: set())
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp16", "cpu")
