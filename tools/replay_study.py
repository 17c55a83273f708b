"""The replay store on the digits demo over seeds (online vs fp32, top-k and
cycled stores; a temperature sweep from one store):
`python tools/replay_study.py [--seeds 0 1 2] [--epochs 100]`.
Details: projects/funmatch_paper/replay_study.py."""
import os.path as osp
import sys

# projects/ is used from the checkout: the repository root goes first.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.replay_study import main  # noqa: E402

if __name__ == '__main__':
    main()
