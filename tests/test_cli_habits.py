"""Everyday CLI behaviour (issue 16, items 4, 6, 7), through the console script as a user runs it:
messages that say what is valid, signals, output paths checked before the work, several inputs."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CMD = [sys.executable, "-m", "licodec.cli"]


def run(*args, cwd=None):
    return subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("licodec: error:") and r.stderr.count("\n") == 1, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def wait_for_handler(p, signum, timeout=60.0):
    """Block until process `p` catches `signum` (Linux: the SigCgt mask in /proc/PID/status), i.e. until
    `licodec.cli.main` runs: a signal before that kills the interpreter by its default action, as it
    would any program still starting, and tests nothing of ours. Returns False if `p` exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("SigCgt:") and int(line.split()[1], 16) >> (signum - 1) & 1:
                    return True
        except OSError:
            pass
        time.sleep(0.005)
    return False


def temp_files(d):
    return sorted(p.name for p in d.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp"))


@pytest.fixture
def work(tmp_path, sample_path):
    shutil.copy(sample_path, tmp_path / "photo.png")
    return tmp_path


# --- item 7: messages -------------------------------------------------------------------------

@pytest.mark.parametrize("q", ["9", "nan", "inf", "0.5", "-inf"])
def test_quality_out_of_range_says_the_range(work, q):
    r = run("compress", work / "photo.png", f"--quality={q}")
    assert_one_line_error(r, "outside the range 1..8")
    assert "no shipped weights" not in r.stderr
    assert not (work / "photo.lic").exists()


def test_unknown_model_says_unknown_and_lists_names(work):
    r = run("compress", work / "photo.png", "-m", "nosuch")
    assert_one_line_error(r, "unknown model 'nosuch'", "mbt2018-mean", "han2024-cca")


@pytest.mark.parametrize("sig, code, line", [(signal.SIGINT, 130, "licodec: interrupted\n"),
                                             (signal.SIGTERM, 143, "licodec: terminated\n")])
@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_signal_during_start_up_no_traceback(work, tiny_weights, sig, code, line, delay):
    # `delay` s after `main` took the signals, the command is still importing torch or loading weights
    p = subprocess.Popen([*CMD, "compress", str(work / "photo.png"), "--weights", str(tiny_weights)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for_handler(p, signal.SIGTERM) or p.returncode == 0, p.communicate()
    time.sleep(delay)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err
    if p.returncode != 0:  # (a machine fast enough to finish first: nothing to check)
        assert p.returncode == code and err == line, (p.returncode, err)
        assert not (work / "photo.lic").exists() and temp_files(work) == []


def test_header_repr_is_short(work, tiny_weights):
    from licodec.format import unpack

    assert run("compress", work / "photo.png", "--weights", tiny_weights).returncode == 0
    f = unpack((work / "photo.lic").read_bytes())
    f.streams = [b"\0" * 80_000, b"\1" * 10]
    text = repr(f)
    assert len(text) < 400 and "80000" in text and "mbt2018-mean" in text, text


def test_train_help_shows_defaults():
    r = run("train", "--help")
    assert r.returncode == 0 and "(default: 256)" in r.stdout and "(default: None)" not in r.stdout


def test_help_does_not_import_torch():
    code = ("import sys, licodec.cli\n"
            "try:\n    licodec.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    licodec.cli.main(['compress', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("False"), r.stdout + r.stderr


def test_help_defaults_agree_with_the_code():
    import inspect

    from licodec import codec, defaults
    from licodec.models import refine

    assert (defaults.DEFAULT_MODEL, defaults.DEFAULT_QUALITY) == (codec.DEFAULT_MODEL, codec.DEFAULT_QUALITY)
    assert inspect.signature(codec.Codec).parameters["tile"].default == defaults.DEFAULT_TILE
    # every effort level the CLI accepts has an optimiser schedule, and "max" is the last one
    assert sorted(refine.EFFORT_STEPS) == list(range(defaults.MAX_EFFORT + 1))


# --- item 4: SIGTERM and output paths checked first --------------------------------------------

def test_sigterm_during_decompress_cleans_up(tmp_path, tiny_weights):
    rgb = np.random.default_rng(0).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "big.png")
    assert run("compress", tmp_path / "big.png", "--weights", tiny_weights).returncode == 0
    p = subprocess.Popen([*CMD, "decompress", str(tmp_path / "big.lic"), "--weights", str(tiny_weights),
                          "-o", str(tmp_path / "out.png")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for_handler(p, signal.SIGTERM) or p.returncode == 0, p.communicate()
    time.sleep(1.5)  # past the imports, inside decoding or writing the PNG
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert temp_files(tmp_path) == []
    if p.returncode != 0:  # finished before the signal on a fast machine: nothing more to check
        assert p.returncode == 143 and err == "licodec: terminated\n", (p.returncode, err)
        assert not (tmp_path / "out.png").exists()


def test_output_is_existing_directory(work):
    (work / "d").mkdir()
    r = run("compress", work / "photo.png", "-o", work / "d")
    assert_one_line_error(r, "is a directory", "-o")
    assert "--force" not in r.stderr
    r = run("compress", work / "photo.png", "-o", work / "d", "--force")
    assert_one_line_error(r, "is a directory")


def test_output_parent_is_a_file(work):
    (work / "afile").write_text("x")
    for out in (work / "afile" / "x.lic", work / "afile" / "sub" / "x.lic"):
        r = run("compress", work / "photo.png", "-o", out)
        assert_one_line_error(r, "afile is a file, not a directory")
    r = run("compress", work / "photo.png", "-o", work / "nosuch" / "x.lic")
    assert_one_line_error(r, "no such directory")


def test_output_checked_before_loading_and_encoding(work, monkeypatch):
    # an unknown model would fail at load time: the bad output is reported first
    r = run("compress", work / "photo.png", "-m", "nosuch", "-o", work / "nosuch" / "x.lic")
    assert_one_line_error(r, "no such directory")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_fails_before_encoding(work, tiny_weights):
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        t0 = time.perf_counter()
        r = run("compress", work / "photo.png", "--weights", tiny_weights, "-o", ro / "x.lic")
        assert_one_line_error(r, "cannot write there")
        assert ".tmp" not in r.stderr and "bpp" not in r.stdout
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


# --- item 6: several inputs ---------------------------------------------------------------------

def test_several_inputs_one_output_each_failures_do_not_stop(work, tiny_weights):
    shutil.copy(work / "photo.png", work / "b.png")
    (work / "bad.png").write_bytes(b"not an image")
    r = run("compress", work / "photo.png", work / "bad.png", work / "b.png", "--weights", tiny_weights)
    assert r.returncode == 1, r.stderr
    assert (work / "photo.lic").exists() and (work / "b.lic").exists() and not (work / "bad.lic").exists()
    assert r.stderr.count("licodec: error:") == 1 and "bad.png" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout.strip().splitlines()[-1] == "3 files: 2 compressed, 1 failed"
    r = run("decompress", work / "photo.lic", work / "b.lic", "--weights", tiny_weights)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2 files: 2 decompressed, 0 failed"
    assert (work / "photo.decoded.png").exists() and (work / "b.decoded.png").exists()


def test_several_inputs_refuse_one_output_name(work, tiny_weights):
    shutil.copy(work / "photo.png", work / "b.png")
    r = run("compress", work / "photo.png", work / "b.png", "-o", work / "x.lic", "--weights", tiny_weights)
    assert_one_line_error(r, "several inputs")
    assert not (work / "x.lic").exists() and not (work / "photo.lic").exists()


def test_stdin_and_stdout(work, tiny_weights):
    png = (work / "photo.png").read_bytes()
    r = subprocess.run([*CMD, "compress", "-", "--weights", str(tiny_weights)], input=png, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:4] == b"\x89LIC" and b"<stdin> -> <stdout>" in r.stderr
    assert run("compress", work / "photo.png", "--weights", tiny_weights).returncode == 0
    assert r.stdout == (work / "photo.lic").read_bytes()  # the same bytes as through files
    r2 = subprocess.run([*CMD, "compress", str(work / "photo.png"), "-o", "-", "--weights", str(tiny_weights)],
                        capture_output=True)
    assert r2.returncode == 0 and r2.stdout == r.stdout, r2.stderr
    d = subprocess.run([*CMD, "decompress", "-", "--weights", str(tiny_weights)], input=r.stdout, capture_output=True)
    assert d.returncode == 0 and d.stdout[:8] == b"\x89PNG\r\n\x1a\n", d.stderr
    d2 = subprocess.run([*CMD, "decompress", "-", "-o", str(work / "out.png"), "--weights", str(tiny_weights)],
                        input=r.stdout, capture_output=True)
    assert d2.returncode == 0 and (work / "out.png").read_bytes() == d.stdout, d2.stderr
    bad = subprocess.run([*CMD, "decompress", "-", "--weights", str(tiny_weights)], input=b"junk", capture_output=True)
    assert bad.returncode == 1 and bad.stdout == b"" and bad.stderr.count(b"\n") == 1, bad.stderr
    assert_one_line_error(run("compress", "-", work / "photo.png"), "standard input")
    for junk in (b"junk", png[:100]):  # not an image, a truncated one: named as the user named it
        bad = subprocess.run([*CMD, "compress", "-", "--weights", str(tiny_weights)], input=junk, capture_output=True)
        assert bad.returncode == 1 and bad.stdout == b"" and bad.stderr.startswith(b"licodec: error: <stdin>: "), bad.stderr
        assert b"licodec-stdin-" not in bad.stderr


def test_progress_bar_on_a_terminal_only(tmp_path, tiny_weights):
    import fcntl
    import pty
    import select
    import struct
    import termios

    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(tmp_path / "im.png")
    args = [*CMD, "compress", str(tmp_path / "im.png"), "--weights", str(tiny_weights), "--tile", "128"]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        p = subprocess.run([*args, "-o", str(tmp_path / "a.lic")], stdout=subprocess.PIPE, stderr=slave, timeout=120)
        err = b""
        while select.select([master], [], [], 0.5)[0]:  # what the command wrote to its terminal
            chunk = os.read(master, 1 << 16)
            if not chunk:
                break
            err += chunk
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 0 and b"compress: analysis" in err and b"tile" in err, err
    r = subprocess.run([*args, "-o", str(tmp_path / "b.lic")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr  # not a terminal: no bar
    assert (tmp_path / "a.lic").read_bytes() == (tmp_path / "b.lic").read_bytes()


def test_effort_flag(work, tiny_weights):
    r = run("compress", work / "photo.png", "--weights", tiny_weights, "--effort", "9")
    assert r.returncode == 2 and "expected an integer in 0..4 or max" in r.stderr and "Traceback" not in r.stderr
    Image.open(work / "photo.png").crop((0, 0, 96, 64)).save(work / "small.png")
    r = run("compress", work / "small.png", "--weights", tiny_weights, "--effort", "max")
    assert r.returncode == 0, r.stderr
    assert run("decompress", work / "small.lic", "--weights", tiny_weights).returncode == 0
