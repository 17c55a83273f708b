"""Benchmark a function-matching config's training step.

    python tools/benchmark.py CONFIG [--iters N] [--warmup W]
        [--batch-size B] [--photo-data N] [--cfg-options k=v ...]

Prints markdown tables: images/s, the step split into data wait, teacher
forward, student forward+backward and optimizer, peak memory, the ratio to a
hand-written PyTorch loop doing the same work, teacher fp32 against the fast
path, ConsistentView against two independent pipelines and, on a known GPU,
the MFU. See projects/funmatch_paper/benchmark.py and docs/benchmarks.md.

Examples::

    # the digits demo (random teacher weights: timing does not need them)
    python tools/benchmark.py \
        configs/funmatch/demo/digits_funmatch_student.py \
        --cfg-options model.teachers.0.checkpoint=None
    # BiT R152x2 -> R50x1 at 64 px, batch 4, on 64 generated photographs
    python tools/benchmark.py configs/funmatch/r50_bit152x2_imagenet.py \
        --batch-size 4 --photo-data 64 --cfg-options \
        model.teachers.bit.checkpoint=None model.teachers.bit.size=64 \
        train_dataloader.dataset.pipeline.1.student_size=64 \
        train_dataloader.dataset.pipeline.1.teacher_sizes=[64]
"""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.benchmark import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
