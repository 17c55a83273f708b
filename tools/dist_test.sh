#!/usr/bin/env bash
# Multi-process evaluation on torchrun.
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py flags]
# Multi-node: run on every node with NNODES, NODE_RANK, MASTER_ADDR (and the
# same PORT). Without a GPU each process trains on CPU with the gloo backend.
# The torchrun options (and MAX_RESTARTS: a restarted evaluation starts over)
# are tools/dist_train.sh's, from tools/torchrun_options.sh.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
DIR="$(cd "$(dirname "$0")" && pwd)"
source "$DIR/torchrun_options.sh"
torchrun_options "$GPUS"

PYTHONPATH="$DIR/..:${PYTHONPATH:-}" \
exec python -m torch.distributed.run \
    "${TORCHRUN_OPTIONS[@]}" \
    "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
