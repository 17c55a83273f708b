import pytest
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from mmfunmatch.engine.optimizers import decay_groups


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_decay_on_conv_and_linear_weights_only_in_two_groups():
    net = Net()
    wrapper = build_optim_wrapper(net, dict(
        constructor='FunMatchOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=0.03, weight_decay=0.01)))
    groups = wrapper.optimizer.param_groups
    assert len(groups) == 2
    by_id = {id(p): g['weight_decay'] for g in groups for p in g['params']}
    assert by_id[id(net.conv.weight)] == by_id[id(net.fc.weight)] == 0.01
    for p in (net.conv.bias, net.norm.weight, net.norm.bias, net.fc.bias):
        assert by_id[id(p)] == 0.0
    assert id(net.frozen.weight) not in by_id


def test_no_decay_mult_and_unknown_keys():
    groups = decay_groups(Net(), 0.1, no_decay_mult=0.5)
    assert [g['weight_decay'] for g in groups] == [0.1, 0.05]
    with pytest.raises(ValueError, match='no_decay_mult'):
        build_optim_wrapper(Net(), dict(
            constructor='FunMatchOptimWrapperConstructor',
            paramwise_cfg=dict(bias_decay_mult=0.),
            optimizer=dict(type='SGD', lr=0.1)))
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match='no trainable parameters'):
        decay_groups(frozen, 0.1)
