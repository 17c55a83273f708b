"""A student step from a replay store against the online step (BiT-R152x2
-> BiT-R50x1), and the labelling rate against the teacher's share:
`python tools/benchmark_replay.py [--size 64] [--batch-size 8]`.
Details: projects/funmatch_paper/benchmark_replay.py."""
import os.path as osp
import sys

# projects/ is used from the checkout: the repository root goes first.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.benchmark_replay import main  # noqa: E402

if __name__ == '__main__':
    main()
