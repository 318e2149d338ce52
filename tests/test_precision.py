"""`licodec.precision`: which precision ``--precision auto`` trains in, by the CPU's vendor and flags."""

import pytest

from licodec import precision

INTEL, AMD = "GenuineIntel", "AuthenticAMD"


@pytest.mark.parametrize("vendor, flags, expected", [
    (AMD, {"avx2", "fma"}, "fp32"),                                        # Zen 3: bf16 emulated, 8x slower
    (AMD, {"avx2", "avx512f", "avx512_bf16"}, "bf16"),                     # Zen 4: AVX512-BF16
    (INTEL, {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bf16"),   # Sapphire Rapids: AMX-BF16
    (INTEL, {"avx512f", "avx512_bf16", "avx512_fp16"}, "fp32"),            # Emerald Rapids, AMX hidden: bf16 slower
    (INTEL, {"avx512f", "avx512_vnni"}, "fp32"),                           # AVX-512 without bf16 instructions
    (None, {"avx512_bf16"}, "fp32"),                                       # vendor unknown: only AMX counts
    (None, set(), "fp32"),                                                 # flags unknown (not Linux)
])
def test_auto_follows_the_measured_bf16_speedups(monkeypatch, vendor, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(precision, "cpu_vendor", lambda: vendor)
    assert precision.resolve_precision("auto", "cpu") == expected


def test_cpuinfo_fields_are_read_by_name(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512_bf16 sse\n\n"
                    "processor\t: 1\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu\n")
    real_path = precision.Path
    monkeypatch.setattr(precision, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    assert precision.cpu_vendor() == AMD
    assert precision.cpu_flags() == {"fpu", "avx512_bf16", "sse"}
    monkeypatch.setattr(precision, "Path", lambda p: tmp_path / "missing")
    assert precision.cpu_vendor() is None and precision.cpu_flags() == set()


def test_explicit_precision_is_kept_and_unknown_ones_are_refused(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: set())
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp16", "cpu")
