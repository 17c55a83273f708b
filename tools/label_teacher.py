"""Write a replay store: `python tools/label_teacher.py CONFIG STORE_DIR
[--epochs E] [--precision fp32|fp16|topk] [--topk K] [--cfg-options ...]`.

Runs the teachers of a function-matching CONFIG on exactly the views its
training draws (epochs, crops, flips, mixup) and stores their targets;
rerunning the same command continues where a killed run stopped. Several
processes, as training runs them: `torchrun --nproc-per-node 8
tools/label_teacher.py CONFIG STORE --launcher pytorch` (the replay run then
uses the same number of processes). Train from the store with
model.type='ReplayDistiller' (configs/funmatch/replay/, docs/replay.md).
"""
from mmfunmatch.apis.label import label

if __name__ == '__main__':
    label()
