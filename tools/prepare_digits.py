"""Write scikit-learn's digits as an image folder: `tools/prepare_digits.py ROOT`."""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.digits import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
