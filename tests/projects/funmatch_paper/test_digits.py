"""projects/funmatch_paper/digits.py: the harder split (students see N
images per class, the teacher the rest of ``train``) on the real digits,
in index form and as written image folders."""
import glob
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from projects.funmatch_paper.digits import (CLASSES, VAL_SIZE, _split_indices,
                                            fewshot_split, write_fewshot)


@pytest.fixture(scope='module')
def labels():
    return load_digits().target


@pytest.mark.parametrize('per_class', [1, 10, 20])
def test_fewshot_split_counts_and_disjointness(labels, per_class):
    split = fewshot_split(labels, per_class)
    few = split[f'train_few{per_class}']
    rest = split[f'train_rest{per_class}']
    val = split['val']
    # Exactly per_class student images of every class.
    assert np.bincount(labels[few], minlength=10).tolist() == [per_class] * 10
    # Pairwise disjoint, and few + rest is exactly the demo's `train`.
    assert not set(few) & set(rest)
    assert not set(few) & set(val) and not set(rest) & set(val)
    base = _split_indices(labels, small_per_class=20)
    assert sorted(np.concatenate([few, rest])) == sorted(base['train'])
    assert len(few) + len(rest) + len(val) == len(labels) == 1797
    # val is the demo's val, untouched.
    assert np.array_equal(val, base['val']) and len(val) == VAL_SIZE
    # The students' images are the first per_class of each class in the
    # split order: for per_class <= 20 a subset of `train_small`.
    if per_class <= 20:
        assert set(few) <= set(base['train_small'])


def test_fewshot_split_refuses_impossible_sizes(labels):
    with pytest.raises(ValueError, match='at least 1 image per class'):
        fewshot_split(labels, 0)
    # The smallest class of digits' `train` has 124 images (174 - 50 val).
    smallest = min(np.bincount(labels)) - VAL_SIZE // 10
    fewshot_split(labels, smallest)
    with pytest.raises(ValueError, match='choose a smaller per_class'):
        fewshot_split(labels, smallest + 1)


def names(root, split):
    """{file name: class folder} of one split folder."""
    return {osp.basename(p): osp.basename(osp.dirname(p))
            for p in glob.glob(osp.join(root, split, '*', '*.png'))}


def test_write_fewshot_writes_disjoint_folders_of_the_train_images(
        digits_root):
    # Beside the session's digits (write_digits's folders): val is not
    # written again.
    root = digits_root
    counts = write_fewshot(root, per_class=10)
    assert counts == {'train_few10': 100, 'train_rest10': 1197}
    few, rest = names(root, 'train_few10'), names(root, 'train_rest10')
    train, val = names(root, 'train'), names(root, 'val')
    assert len(few) == 100 and len(rest) == 1197
    for c in CLASSES:
        assert len(glob.glob(osp.join(root, 'train_few10', c, '*.png'))) == 10
    assert not set(few) & set(rest)
    assert not (set(few) | set(rest)) & set(val)
    # The same files as `train`, in the same class folders, pixel for pixel.
    assert {**few, **rest} == train
    for name in list(few)[:5] + list(rest)[:5]:
        split = 'train_few10' if name in few else 'train_rest10'
        a = np.asarray(Image.open(osp.join(root, split, train[name], name)))
        b = np.asarray(Image.open(osp.join(root, 'train', train[name], name)))
        assert np.array_equal(a, b)

    # Again: nothing rewritten.
    path = glob.glob(osp.join(root, 'train_few10', '0', '*.png'))[0]
    stamp = os.path.getmtime(path)
    assert write_fewshot(root, per_class=10) == counts
    assert os.path.getmtime(path) == stamp


def test_write_fewshot_alone_writes_val_too(tmp_path):
    root = str(tmp_path / 'digits')
    counts = write_fewshot(root, per_class=2)
    assert counts == {'train_few2': 20, 'train_rest2': 1277, 'val': 500}
    assert not set(names(root, 'train_few2')) & set(names(root, 'val'))
