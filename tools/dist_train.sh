#!/usr/bin/env bash
# Multi-process / multi-node training on torchrun.
#   tools/dist_train.sh CONFIG GPUS [train.py flags]
# Multi-node: run on every node with NNODES, NODE_RANK, MASTER_ADDR (and the
# same PORT). Without a GPU each process trains on CPU with the gloo backend.
#
# MAX_RESTARTS=N (default 0): after a training process fails (a crash, a kill,
# a lost peer) torchrun restarts the processes of every node, up to N times,
# and they continue from the newest complete checkpoint in the work directory
# (tools/train.py resumes by itself in a restarted group). The nodes then meet
# through a c10d rendezvous at MASTER_ADDR:PORT (tools/torchrun_options.sh).
#
# Exit code 5: pre-empted (a SIGTERM, or the signal configured in
# default_hooks.preemption, reached this launcher or a training process):
# every rank finished its iteration and a checkpoint was written; relaunch
# with --resume. Such a stop is never restarted, whatever MAX_RESTARTS says:
# the job ends so that the scheduler can requeue it. torchrun itself reports
# any worker failure as 1, so the training processes leave a marker file
# ($MMFUNMATCH_PREEMPTED_FILE, one per node) that is turned into 5 here.
# torchrun forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT and (set below)
# SIGUSR1/SIGUSR2 to the training processes and kills them
# TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds later (default 30; raised to 120
# here so a large checkpoint can be written).
set -euo pipefail
CONFIG=$1
GPUS=$2
DIR="$(cd "$(dirname "$0")" && pwd)"
source "$DIR/torchrun_options.sh"
torchrun_options "$GPUS"

export PET_SIGNALS_TO_HANDLE=${PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2}
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-120}
MMFUNMATCH_PREEMPTED_FILE="$(mktemp -u "${TMPDIR:-/tmp}/mmfunmatch-preempted.XXXXXX")"
export MMFUNMATCH_PREEMPTED_FILE

# torchrun in this process (exec: signals to this script reach torchrun,
# and the training processes are this process's children), then the marker.
# torchrun restarts a group after any non-zero exit and has no option to
# exempt one: when the marker is there, the agent is left no restarts.
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" \
exec python -c '
import os, sys
from torch.distributed.elastic.agent.server.local_elastic_agent import (
    LocalElasticAgent)
from torch.distributed.run import main
marker = os.environ["MMFUNMATCH_PREEMPTED_FILE"]
monitor = LocalElasticAgent._monitor_workers

def no_restart_after_preemption(agent, worker_group):
    result = monitor(agent, worker_group)
    if (result.is_failed() and agent._remaining_restarts > 0
            and os.path.exists(marker)):
        print("dist_train.sh: the training processes stopped for a "
              "pre-emption signal: not restarting them", file=sys.stderr)
        agent._remaining_restarts = 0
    return result

LocalElasticAgent._monitor_workers = no_restart_after_preemption
try:
    main()
finally:
    if os.path.exists(marker):
        os.remove(marker)
        print("dist_train.sh: pre-empted after a checkpoint; relaunch with "
              "--resume (exit code 5)", file=sys.stderr)
        sys.exit(5)
' \
    "${TORCHRUN_OPTIONS[@]}" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
