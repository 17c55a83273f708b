# The torchrun options of tools/dist_train.sh and tools/dist_test.sh (sourced
# by both): `torchrun_options NPROC` fills the array TORCHRUN_OPTIONS from
#   NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500),
#   MAX_RESTARTS (0), RDZV_ID (the Slurm job id, else "mmfunmatch").
#
# MAX_RESTARTS=0: static rendezvous, node ranks from NODE_RANK; a failed
# process ends the job. MAX_RESTARTS=N > 0: torchrun's elastic agent
# restarts the whole worker group (every node) up to N times after a process
# fails, and the nodes meet through a c10d rendezvous hosted by node 0's
# agent at MASTER_ADDR:PORT (the static rendezvous cannot tell the other
# nodes that one node restarted). There, NODE_RANK is not used: node ranks
# follow the rendezvous (sorted by host name), and RDZV_ID must be the same
# on every node of a job.
torchrun_options() {
    local nproc=$1
    NNODES=${NNODES:-1}
    NODE_RANK=${NODE_RANK:-0}
    PORT=${PORT:-29500}
    MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
    MAX_RESTARTS=${MAX_RESTARTS:-0}
    if ! [[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]]; then
        echo "MAX_RESTARTS=$MAX_RESTARTS: give a whole number of restarts" \
             "(0, the default, restarts nothing)." >&2
        exit 2
    fi
    TORCHRUN_OPTIONS=(--nnodes="$NNODES" --nproc_per_node="$nproc")
    if [ "$MAX_RESTARTS" -eq 0 ]; then
        TORCHRUN_OPTIONS+=(--node_rank="$NODE_RANK"
                           --master_addr="$MASTER_ADDR"
                           --master_port="$PORT")
    else
        # torch 2.14's c10d rendezvous lets the training processes of every
        # round share one store, kept from the first round: a restarted rank
        # read the previous round's gloo addresses and keys ("Connection
        # refused", then a hang). Unshared, rank 0 of each round hosts a
        # fresh store.
        export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
        TORCHRUN_OPTIONS+=(--max-restarts="$MAX_RESTARTS"
                           --rdzv-backend=c10d
                           --rdzv-endpoint="$MASTER_ADDR:$PORT"
                           --rdzv-id="${RDZV_ID:-${SLURM_JOB_ID:-mmfunmatch}}")
    fi
}
