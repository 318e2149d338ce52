"""The README's code runs as written: every ```python block, in a fresh interpreter, in a folder
holding a ``photo.png`` (the bundled sample), and the install commands stay what `.ci/run` runs."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# a block whose first line says so is not run here (none today)
SKIP_MARK = re.compile(r"#\s*needs:\s*(network|gpu|cuda)", re.I)


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_readme_has_python_blocks():
    assert python_blocks(), "no ```python block found in README.md"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(index, tmp_path, sample_path):
    code = python_blocks()[index]
    if SKIP_MARK.search(code.splitlines()[0] if code else ""):
        pytest.skip("marked as needing network or a GPU")
    shutil.copy(sample_path, tmp_path / "photo.png")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"README python block {index} failed:\n{code}\n--- stderr ---\n{r.stderr}"


def test_readme_quick_start_commands_unchanged():
    text = README.read_text(encoding="utf-8")
    assert "$ python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 . && licodec demo" in text
    assert '$ . .venv/bin/activate && pip install torch==2.13.0 ".[test]" && python -m pytest' in text


def test_readme_documents_cpu_wheel_index():
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in README.read_text(encoding="utf-8")


def test_gitignore_ignores_pip_build_folder():
    lines = (README.parent / ".gitignore").read_text(encoding="utf-8").split()
    assert "build/" in lines
