#!/usr/bin/env bash
# Multi-process / multi-node training on torchrun.
#   tools/dist_train.sh CONFIG GPUS [train.py flags]
# Multi-node: run on every node with NNODES, NODE_RANK, MASTER_ADDR (and the
# same PORT). Without a GPU each process trains on CPU with the gloo backend.
#
# Exit code 5: pre-empted (a SIGTERM, or the signal configured in
# default_hooks.preemption, reached this launcher or a training process):
# every rank finished its iteration and a checkpoint was written; relaunch
# with --resume. torchrun itself reports any worker failure as 1, so the
# training processes leave a marker file ($MMFUNMATCH_PREEMPTED_FILE, one
# per node) that is turned into 5 here. torchrun forwards SIGTERM, SIGINT,
# SIGHUP, SIGQUIT and (set below) SIGUSR1/SIGUSR2 to the training processes
# and kills them TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds later (default 30;
# raised to 120 here so a large checkpoint can be written).
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR="$(cd "$(dirname "$0")" && pwd)"

export PET_SIGNALS_TO_HANDLE=${PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2}
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-120}
MMFUNMATCH_PREEMPTED_FILE="$(mktemp -u "${TMPDIR:-/tmp}/mmfunmatch-preempted.XXXXXX")"
export MMFUNMATCH_PREEMPTED_FILE

# torchrun in this process (exec: signals to this script reach torchrun,
# and the training processes are this process's children), then the marker.
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" \
exec python -c '
import os, sys
from torch.distributed.run import main
marker = os.environ["MMFUNMATCH_PREEMPTED_FILE"]
try:
    main()
finally:
    if os.path.exists(marker):
        os.remove(marker)
        print("dist_train.sh: pre-empted after a checkpoint; relaunch with "
              "--resume (exit code 5)", file=sys.stderr)
        sys.exit(5)
' \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
