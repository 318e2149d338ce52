#!/usr/bin/env bash
# The device side of a campaign GPU leg (scripts/gpu_leg.py; campaign/README.md): resume campaign/
# on the GPU from the state `gpu_leg.py pack` put in .gpu/, train for SECONDS, stop with SIGINT (the
# run writes its checkpoint at that step) and leave the state in <= 16 MiB parts, its manifest and
# the log under $OUT for `gpu_leg.py unpack`.
#   bash scripts/gpu_leg.sh SECONDS [extra licodec train flags, e.g. --device cpu for a dry run]
set -uo pipefail
secs=${1:?usage: scripts/gpu_leg.sh SECONDS [train flags]}
shift
out=${OUT:?OUT: the folder whose files come back}
[ -f .gpu/state.safetensors ] || { echo "no .gpu/state.safetensors: run scripts/gpu_leg.py pack and carry .gpu"; exit 2; }
site=$(mktemp -d)
python3 -c "import constriction" 2>/dev/null ||  # the device has no constriction: its wheel travels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu/whl/*.whl || exit 2
export PYTHONPATH="$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cp .gpu/state.safetensors campaign/checkpoint.safetensors
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# SIGINT after SECONDS: the run checkpoints at the step it is on and exits (non-zero: interrupted)
timeout -s INT -k 120 "$secs" python3 -m licodec.cli train @campaign/run.args --resume --device cuda \
  --data .gpu/train --val '' --threads 8 --checkpoint-minutes 3 "$@" 2>&1 | tr '\r' '\n' | tail -n 30
python3 scripts/gpu_leg.py split campaign/checkpoint.safetensors campaign/log.csv "$out"
tail -n 3 campaign/log.csv
