"""The penultimate features of a classifier, recorded in the forward pass
that gives its logits.

Feature distillation (SRD) needs the features that feed each model's
classifier layer on exactly the view whose logits the KL term uses. Running
the backbone a second time would double the teachers' cost and, for a
student in training mode, update its BatchNorm statistics twice. Instead a
forward pre-hook on the classifier layer keeps that layer's input while the
ordinary forward runs; the hook is removed when recording ends.
"""
import contextlib
from typing import Dict, Iterator, Sequence

import torch
import torch.nn as nn


def classifier_layer(model: nn.Module) -> nn.Module:
    """The layer that maps a classifier's penultimate features to logits.

    - a timm network, bare or in mmpretrain's ``TimmClassifier`` (``.model``):
      timm's own ``get_classifier()`` (BiT: ``head.fc``, a 1x1 conv);
    - an mmpretrain ``ImageClassifier``: the last ``nn.Linear`` of its head
      (``LinearClsHead.fc``; the last layer of ``StackedLinearClsHead``).

    Raises:
        TypeError: the model has neither, so its features cannot be found.
    """
    net = getattr(model, 'model', model)
    if hasattr(net, 'get_classifier'):
        layer = net.get_classifier()
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            return layer
    head = getattr(model, 'head', None)
    if isinstance(head, nn.Module):
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if linears:
            return linears[-1]
    raise TypeError(
        f'cannot find the classifier layer of {type(model).__name__}: '
        f'feature distillation reads the input of a timm classifier '
        f'(get_classifier()) or of the last nn.Linear of an mmpretrain '
        f'head. Use such a model, or leave feature_loss unset.')


def feature_width(model: nn.Module) -> int:
    """The width of ``model``'s penultimate features (its classifier layer's
    input)."""
    layer = classifier_layer(model)
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels


@contextlib.contextmanager
def record_features(models: Dict[str, nn.Module]
                    ) -> Iterator[Dict[str, torch.Tensor]]:
    """Record each model's penultimate features while the block runs.

    Yields a dict that fills, per key of ``models``, with the (N, C) input
    of that model's classifier layer at its last call in the block (a 1x1
    conv's (N, C, 1, 1) input is flattened). No extra forward pass runs.
    """
    found: Dict[str, torch.Tensor] = {}
    handles = []

    def keep(key):
        def hook(module, args):
            found[key] = args[0].flatten(1)
        return hook

    for key, model in models.items():
        handles.append(
            classifier_layer(model).register_forward_pre_hook(keep(key)))
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def teacher_feature_keys(n: int) -> Sequence[str]:
    """The keys :func:`record_features` uses for ``n`` teachers."""
    return [f'teacher{i}' for i in range(n)]
