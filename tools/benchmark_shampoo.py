"""Step time of Shampoo against torch's AdamW on a BiT-R50x1-sized student.

    python tools/benchmark_shampoo.py                   # CPU: batch 8, 128 px
    python tools/benchmark_shampoo.py --device cuda     # batch 64, 224 px

Flags: --batch-size, --img-size, --warmup, --iters, --freqs, --block-size,
--lr, --threads. How it is measured: projects/funmatch_paper/
benchmark_shampoo.py; results: docs/benchmarks_shampoo.md.
"""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.benchmark_shampoo import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
