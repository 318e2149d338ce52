"""File-system edge cases of the CLI (issue 17, item 7): a dangling symlink at the output path
counts as an existing output, the input is never written over (not even with --force), and an
output suffix that contradicts the command needs --force."""

import os
import shutil

import pytest

from test_cli import assert_clean_error, run


@pytest.fixture
def work(tmp_path, sample_path, tiny_weights):
    shutil.copy(sample_path, tmp_path / "x.png")
    assert run("compress", tmp_path / "x.png", "--weights", tiny_weights).returncode == 0
    return tmp_path


def test_a_dangling_symlink_is_not_replaced_without_force(work, tiny_weights):
    link = work / "out.lic"
    os.symlink(work / "nowhere", link)
    assert_clean_error(run("compress", work / "x.png", "-o", link, "--weights", tiny_weights))
    assert link.is_symlink() and os.readlink(link) == str(work / "nowhere")
    assert not (work / "nowhere").exists()
    r = run("compress", work / "x.png", "-o", link, "--weights", tiny_weights, "--force")
    assert r.returncode == 0, r.stderr
    assert not link.is_symlink() and link.read_bytes()[:4] == b"\x89LIC"


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_never_write_over_the_input_even_with_force(work, tiny_weights, command):
    inp = work / ("x.png" if command == "compress" else "x.lic")
    before = inp.read_bytes()
    for out in (inp, work / "." / inp.name):
        r = run(command, inp, "-o", out, "--weights", tiny_weights, "--force")
        assert_clean_error(r)
        assert "is the input file" in r.stderr
    link = work / "link"
    os.symlink(inp, link)
    assert_clean_error(run(command, inp, "-o", link, "--weights", tiny_weights, "--force"))
    os.link(inp, work / "hard")
    assert_clean_error(run(command, inp, "-o", work / "hard", "--weights", tiny_weights, "--force"))
    assert inp.read_bytes() == before
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


def test_an_image_suffix_out_of_compress_needs_force(work, tiny_weights):
    r = run("compress", work / "x.png", "-o", work / "y.png", "--weights", tiny_weights)
    assert_clean_error(r)
    assert "compress writes a .lic file" in r.stderr and not (work / "y.png").exists()
    assert run("compress", work / "x.png", "-o", work / "y.png", "--weights", tiny_weights, "--force").returncode == 0
    assert (work / "y.png").read_bytes()[:4] == b"\x89LIC"


def test_a_lic_suffix_out_of_decompress_needs_force(work, tiny_weights):
    r = run("decompress", work / "x.lic", "-o", work / "y.lic", "--weights", tiny_weights)
    assert_clean_error(r)
    assert "decompress writes an image" in r.stderr and not (work / "y.lic").exists()
    r = run("decompress", work / "x.lic", "-o", work / "y.lic", "--weights", tiny_weights, "--force")
    assert r.returncode == 0, r.stderr
    assert (work / "y.lic").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
