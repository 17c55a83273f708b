#!/usr/bin/env bash
# Training under Slurm: one task per GPU, mmengine's slurm launcher reads
# SLURM_PROCID / SLURM_NTASKS and the node list.
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py flags]
#
# The run always continues from the newest complete checkpoint in its work
# directory (--resume is added; with none there it starts from scratch), so
# a requeued or resubmitted job picks up where the last one stopped.
#
# Pre-emption and time limits: inside an sbatch job submitted with
#   #SBATCH --requeue
#   #SBATCH --signal=USR1@90      # USR1 to every task, ~90 s before the end
# and the training told to treat that signal as pre-emption
#   tools/slurm_train.sh ... --cfg-options default_hooks.preemption.signals=[SIGUSR1]
# every rank finishes its iteration, rank 0 writes a checkpoint, all exit
# with code 5, and this script requeues the job (scontrol requeue), which
# then resumes from that checkpoint. SIGTERM (Slurm's pre-emption and
# scancel, followed by SIGKILL after KillWait) is handled the same way
# without any option. With --signal=B:USR1@90 only this script receives the
# signal; it forwards it to srun, which passes it to the tasks. Slurm may send
# the signal up to a minute later than asked; leave time for one iteration
# plus a checkpoint write. Pass --work-dir when the config sets its own
# work_dir (the script checks <work_dir>/preempted as well as exit code 5).
#
# MAX_RESTARTS=N (default 0): elastic restarts inside the allocation. One
# task per node runs tools/dist_train.sh (GPUS_PER_NODE processes under a
# torchrun agent, c10d rendezvous on the step's first node, rendezvous id
# the job id); after a process fails the agents restart every node's
# processes, up to N times, from the newest complete checkpoint. Pre-emption
# is not restarted: exit code 5 and the requeue above. Without it (0) a
# failed task ends the job step (--kill-on-bad-exit) with its exit code.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-8}
SRUN_ARGS=${SRUN_ARGS:-""}
MAX_RESTARTS=${MAX_RESTARTS:-0}
DIR="$(cd "$(dirname "$0")" && pwd)"
EXIT_PREEMPTED=5
if ! [[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]]; then
    echo "MAX_RESTARTS=$MAX_RESTARTS: give a whole number of restarts" \
         "(0, the default, restarts nothing)." >&2
    exit 2
fi

ARGS=("${@:4}")
RESUME=--resume
WORK_DIR="work_dirs/$(basename "${CONFIG%.py}")"  # tools/train.py's default
for ((i = 0; i < ${#ARGS[@]}; i++)); do
    case "${ARGS[i]}" in
        --resume|--resume=*) RESUME= ;;  # the caller's own --resume [PATH]
        --work-dir) WORK_DIR=${ARGS[i + 1]:-$WORK_DIR} ;;
        --work-dir=*) WORK_DIR=${ARGS[i]#--work-dir=} ;;
    esac
done
# Written by rank 0 when it stops for a signal (PreemptionHook). srun's own
# exit code can hide the 5: --kill-on-bad-exit kills the tasks still exiting.
MARKER="$WORK_DIR/preempted"
rm -f "$MARKER"

if [ "$MAX_RESTARTS" -eq 0 ]; then  # one task per GPU, no torchrun
    TASKS=(--ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE"
           --cpus-per-task="$CPUS_PER_TASK")
    COMMAND=(python -u "$DIR/train.py" "$CONFIG" --launcher slurm)
else  # one torchrun agent per node (MAX_RESTARTS is exported to it)
    NODES=$(( (GPUS + GPUS_PER_NODE - 1) / GPUS_PER_NODE ))
    TASKS=(--nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1
           --cpus-per-task=$(( CPUS_PER_TASK * GPUS_PER_NODE )))
    COMMAND=(bash -c 'export NNODES=$SLURM_STEP_NUM_NODES
        export MASTER_ADDR=$(scontrol show hostnames "$SLURM_STEP_NODELIST" | head -n 1)
        exec bash "$0" "$@"' "$DIR/dist_train.sh" "$CONFIG" "$GPUS_PER_NODE")
    export MAX_RESTARTS
fi
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    "${TASKS[@]}" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "${COMMAND[@]}" ${ARGS[@]+"${ARGS[@]}"} $RESUME &
SRUN=$!
# sbatch --signal=B:SIG reaches this shell only: pass it on to srun.
for SIG in USR1 USR2 TERM; do
    trap "kill -s $SIG $SRUN 2>/dev/null || true" "$SIG"
done
while :; do
    RC=0
    wait "$SRUN" || RC=$?
    # A trapped signal interrupts wait (status > 128) while srun runs on.
    if [ "$RC" -gt 128 ] && kill -0 "$SRUN" 2>/dev/null; then
        continue
    fi
    break
done
trap - USR1 USR2 TERM

if [ "$RC" -eq "$EXIT_PREEMPTED" ] || [ -f "$MARKER" ]; then
    echo "slurm_train.sh: pre-empted after a checkpoint (exit code $RC)." >&2
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        echo "slurm_train.sh: requeueing job $SLURM_JOB_ID; it resumes" \
             "from the newest complete checkpoint in $WORK_DIR." >&2
        scontrol requeue "$SLURM_JOB_ID" || echo "slurm_train.sh: requeue" \
            "failed (submit with sbatch --requeue); resubmit to resume." >&2
    else
        echo "slurm_train.sh: not inside a batch job (no SLURM_JOB_ID);" \
             "run this script again to resume." >&2
    fi
    exit "$EXIT_PREEMPTED"
fi
exit "$RC"
