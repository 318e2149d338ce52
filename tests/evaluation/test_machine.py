"""The machine description written into every results file."""

from licodec.evaluation.machine import _cpu_name, machine_info, machine_line

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 1
model name\t: Other CPU
"""


def test_cpu_name_has_family_and_model_of_the_first_processor(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(CPUINFO)
    assert _cpu_name(str(f)) == "AMD EPYC (family 25 model 17)"


def test_cpu_name_without_ids_or_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert _cpu_name(str(f)) == "Some ARM core"
    assert _cpu_name(str(tmp_path / "missing"))  # falls back to platform's name, never empty


def test_machine_line_names_the_bf16_instructions():
    info = machine_info()
    assert set(info["bf16_instructions"]) <= {"amx_bf16", "avx512_bf16"}
    line = machine_line({**info, "bf16_instructions": ["avx512_bf16"]})
    assert line.startswith(info["cpu"]) and "bf16 instructions: avx512_bf16" in line
    assert "bf16 instructions: none" in machine_line({**info, "bf16_instructions": []})
