"""The small shared helpers (mmfunmatch/utils.py)."""
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

from mmfunmatch.utils import (dataset_chain, one_hot_labels, output_logits,
                              to_hw)


def test_output_logits_is_the_tensor_or_the_last_of_a_tuple():
    logits = torch.randn(2, 5)
    pre_logits = torch.randn(2, 8)
    assert output_logits(logits) is logits
    assert output_logits((pre_logits, logits)) is logits
    assert output_logits([pre_logits, logits]) is logits


def test_to_hw():
    assert to_hw(7) == (7, 7)
    assert to_hw((3, 4)) == (3, 4)
    hw = to_hw(np.array([5, 6]))  # a pair of numpy ints: plain ints
    assert hw == (5, 6) and all(type(v) is int for v in hw)
    for bad in ((3, ), (1, 2, 3)):
        with pytest.raises(ValueError, match=re.escape(
                f'a size is an int or (h, w), got {bad!r}')):
            to_hw(bad)


def test_dataset_chain_walks_the_wrappers_outermost_first():
    files = dict(type='ImageNet', data_root='data/imagenet')
    stored = dict(type='StoredTeacherDataset', targets='t.npy', dataset=files)
    outer = dict(type='RepeatDataset', times=3, dataset=stored)
    chain = dataset_chain(outer)
    assert [d['type'] for d in chain] == [
        'RepeatDataset', 'StoredTeacherDataset', 'ImageNet']
    # The configs themselves, not copies: a fix to [-1] reaches the config.
    assert chain[0] is outer and chain[-1] is files
    assert dataset_chain(files) == [files]
    # As read from a config file (ConfigDict).
    cfg = Config(dict(train_dataloader=dict(dataset=outer)))
    chain = dataset_chain(cfg.train_dataloader.dataset)
    chain[-1].data_root = 'elsewhere'
    assert cfg.train_dataloader.dataset.dataset.dataset.data_root == \
        'elsewhere'


def test_one_hot_labels():
    samples = [DataSample().set_gt_label(i) for i in (2, 0, 4)]
    scores = one_hot_labels(samples, 5)
    assert scores.dtype == torch.float32
    assert torch.equal(scores, torch.tensor([[0., 0., 1., 0., 0.],
                                             [1., 0., 0., 0., 0.],
                                             [0., 0., 0., 0., 1.]]))
    # One ignored (negative) label, one sample without a label, no samples:
    # no scores at all.
    ignored = samples[:2] + [DataSample().set_gt_label(-1)]
    assert one_hot_labels(ignored, 5) is None
    assert one_hot_labels(samples[:2] + [DataSample()], 5) is None
    assert one_hot_labels([], 5) is None
    assert one_hot_labels(None, 5) is None
