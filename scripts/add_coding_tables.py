"""Store the factorized prior's integer coding tables (format version 4) in weight files saved
before `licodec.weights.save_weights` stored them. The fingerprint does not change (it covers the
model tensors only), so .lic files made with these weights still find them.

    python scripts/add_coding_tables.py src/licodec/weights/*.safetensors
"""

import sys

from licodec.weights import add_tables

for path in sys.argv[1:]:
    print(f"{path}: {'tables added' if add_tables(path) else 'has its tables already'}")
