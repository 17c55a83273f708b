"""Train with MMEngine's runner: `python tools/train.py CONFIG [flags]`.

Flags as MMPretrain's tools/train.py (see mmfunmatch/apis/cli.py).
`--resume` without a path resumes from the newest complete checkpoint in the
work directory (a file cut short by a kill is never picked); under
torchrun's `--max-restarts` (MAX_RESTARTS=N tools/dist_train.sh) every start
does that by itself. Exit codes: 2 a
config error, 3 a non-finite loss or gradient, 4 a lost peer process, 5
pre-empted (a checkpoint was written: requeue with --resume), 6 a checkpoint
write failed (disk full, read-only).
"""
from mmfunmatch.apis.cli import train

if __name__ == '__main__':
    train()
