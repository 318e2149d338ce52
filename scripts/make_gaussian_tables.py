"""Generate src/licodec/entropy/gaussian_tables.npz, the Gaussian integer coding tables of format
version 4 (`licodec.entropy.tables`), and print its SHA-256 for `TABLES_SHA256`.

The tables are constants of the format: run this only to define a new format version, never to
"refresh" them (files of version 4 are coded with the committed ones).

    python scripts/make_gaussian_tables.py
"""

import hashlib
import io
import sys
from pathlib import Path

import numpy as np

from licodec.entropy import tables

out = Path(__file__).resolve().parent.parent / "src" / "licodec" / "entropy" / tables.TABLES_FILE
buf = io.BytesIO()
np.savez_compressed(buf, **tables.pack(tables.generate()))
data = buf.getvalue()
# np.savez_compressed writes zip timestamps: keep the committed bytes when the arrays are the same
if out.exists():
    with np.load(out) as old, np.load(io.BytesIO(data)) as new:
        if all(np.array_equal(old[k], new[k]) for k in new.files) and set(old.files) == set(new.files):
            data = out.read_bytes()
out.write_bytes(data)
print(f"{out}: {len(data)} bytes, SHA-256 {hashlib.sha256(data).hexdigest()}", file=sys.stderr)
print(hashlib.sha256(data).hexdigest())
