#!/usr/bin/env bash
# Reproduces the shipped mbt2018-mean weights (src/licodec/weights/), as trained on a 2-core CPU:
# one base run at quality 3, then short fine-tunes of it to the other rate points.
# Every run is resumable: re-run the script after an interruption and it continues.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d data/train ] || python scripts/prepare_data.py
CFG='{"N": 64, "M": 96}'
COMMON=(--batch-size 4 --patch 256 --bf16 --checkpoint-minutes 5 --val-every 500 --resume)

# base: quality 3 (λ = 0.0067); 12000 steps, lr 2e-4, divided by 10 for the last 10%
# (steps 1-4958 ran without --bf16)
licodec train -m mbt2018-mean --config "$CFG" -q 3 --out runs/mbt-q3 --steps 12000 --lr 2e-4 "${COMMON[@]}"

# fine-tunes from the base, two at a time with one thread each
for pair in "1 5" "2 6"; do
  for q in $pair; do
    licodec train -m mbt2018-mean -q "$q" --init runs/mbt-q3/mbt2018-mean-q3.safetensors \
      --out "runs/mbt-q$q" --steps "${FT_STEPS:-1500}" --lr 1e-4 --threads 1 "${COMMON[@]}" &
  done
  wait
done
mkdir -p src/licodec/weights
cp runs/mbt-q*/mbt2018-mean-q*.safetensors src/licodec/weights/

# variable rate (the weights `licodec compress` uses since 0.2): the q3 weights fine-tuned with gain
# units (gains centred on q3), every image of a batch at its own q ~ U[1, 8]; 8000 steps, cosine
# from 1e-4, one thread (~40 min on this machine), stored as float16
licodec train -m mbt2018-mean --init src/licodec/weights/mbt2018-mean-q3.safetensors --variable-rate \
  --out runs/mbt-vr --steps 8000 --lr 1e-4 --lr-schedule cosine --threads 1 --half \
  --batch-size 4 --patch 256 --bf16 --checkpoint-minutes 10 --val-every 1000 --resume
cp runs/mbt-vr/mbt2018-mean-vr.safetensors src/licodec/weights/

# han2024-cca, small config, variable rate, from scratch (in training: not shipped; 7 500 steps so far,
# run in pieces with re-planned cosine schedules, see MODEL_CARD.md; the snapshot in checkpoints/
# continues with --init checkpoints/han2024-cca-vr.safetensors --variable-rate)
CCA=$(python -c 'import json, licodec.models.cca as c; print(json.dumps(c.SMALL_CONFIG))')
licodec train -m han2024-cca --config "$CCA" --variable-rate --out runs/cca-vr --steps 7500 --lr 2e-4 \
  --lr-schedule cosine --threads 1 --half --batch-size 4 --patch 256 --bf16 --checkpoint-minutes 10 \
  --val-every 1000 --tensorboard --resume
