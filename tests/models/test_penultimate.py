"""Penultimate features recorded in the forward pass that gives the logits
(mmfunmatch/models/penultimate.py), for both model families our configs
use: mmpretrain's ImageClassifier and timm networks (BiT's 1x1-conv head
included) in a TimmClassifier."""
import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from mmfunmatch.models.penultimate import (classifier_layer, feature_width,
                                           record_features)
from tests.conftest import tiny_classifier


def _hooks(layer: nn.Module) -> int:
    return len(layer._forward_pre_hooks)


def test_image_classifier_features_are_the_head_input():
    model = MODELS.build(tiny_classifier(4)).eval()
    x = torch.randn(3, 3, 16, 16)
    layer = classifier_layer(model)
    assert layer is model.head.fc and feature_width(model) == 32
    with record_features(dict(s=model)) as feats:
        logits = model(x, mode='tensor')
    assert _hooks(layer) == 0  # removed when recording ends
    expected = model.head.pre_logits(model.extract_feat(x))
    assert torch.equal(feats['s'], expected)
    assert torch.equal(logits, model.head.fc(feats['s']))


def test_stacked_head_features_are_the_last_layer_input():
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet_CIFAR', depth=18, base_channels=4),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='StackedLinearClsHead', num_classes=10,
                  in_channels=32, mid_channels=[24]))).eval()
    assert feature_width(model) == 24
    x = torch.randn(2, 3, 16, 16)
    with record_features(dict(s=model)) as feats:
        model(x, mode='tensor')
    assert torch.equal(feats['s'],
                       model.head.pre_logits(model.extract_feat(x)))


@pytest.mark.parametrize('name,width', [('test_resnet', None),
                                        ('resnetv2_50x1_bit', 2048)])
def test_timm_features_are_the_classifier_input(name, width):
    """timm's forward_head(pre_logits=True) is the same tensor; BiT's 1x1
    conv head gets (N, C, 1, 1), recorded flattened."""
    model = MODELS.build(dict(type='FunMatchTimmClassifier', model_name=name,
                              pretrained=False, num_classes=7)).eval()
    net = model.model
    assert classifier_layer(model) is net.get_classifier()
    assert feature_width(model) == (width or net.num_features)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), record_features(dict(t=model)) as feats:
        logits = model(x, mode='tensor')
    expected = net.forward_head(net.forward_features(x), pre_logits=True)
    assert torch.equal(feats['t'], expected.flatten(1))
    assert feats['t'].shape == (2, net.num_features)
    assert logits.shape == (2, 7)


def test_a_model_without_a_classifier_layer_is_refused():
    with pytest.raises(TypeError, match='cannot find the classifier layer of '
                       'Sequential'):
        classifier_layer(nn.Sequential(nn.Conv2d(3, 4, 3)))
