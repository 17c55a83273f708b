"""Self-distillation: "Be Your Own Teacher" (Zhang et al., ICCV 2019), on
one network and one view.

An auxiliary head (downsampling bottleneck blocks up to the deepest stage's
width and resolution, global pooling, a linear classifier) follows each
shallow stage of the network. The deepest head learns from the labels; each
shallow head learns from the labels, from the deepest head's softened
distribution (KL) and from the deepest head's pooled features (L2). Every
head sees exactly the same input (one forward of the shared backbone on the
step's view, mixup included): the consistency function matching asks of a
teacher and a student holds here by construction. The auxiliary heads are
used in training and reported in validation, and dropped from the exported
network, which is the plain classifier.

MMRazor 1.0.0 ships the same method (``SelfDistill`` + ``BYOTDistiller``);
its own config runs here too (configs/funmatch/byot/
mmrazor_byot_resnet18_digits.py). This class is the compact variant that
shares mmfunmatch's data path, label handling, optimizer constructor and
export.
"""
import contextlib
import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmfunmatch.models.data_preprocessors import FunMatchDataPreprocessor
from mmfunmatch.models.losses.kl_divergence import kl_divergence_t
from mmfunmatch.models.penultimate import (classifier_layer, feature_width,
                                           record_features)
from mmfunmatch.registry import register_in_mmrazor
from mmfunmatch.utils import output_logits
from .funmatch_distiller import _label_scores


class _Bottleneck(nn.Module):
    """A residual bottleneck that halves the resolution (or keeps it):
    1x1 reduce, 3x3 (stride), 1x1 expand, with a projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int,
                 stride: int) -> None:
        super().__init__()
        mid = max(out_channels // 4, 1)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class AuxHead(nn.Module):
    """BYOT's auxiliary head: bottleneck blocks from a shallow stage's
    (C, H) to the deepest stage's (C_L, H_L), global average pooling, a
    linear classifier. Returns ``(features, logits)``."""

    def __init__(self, in_channels: int, out_channels: int, downsample: int,
                 num_classes: int) -> None:
        super().__init__()
        blocks, c = [], in_channels
        for k in range(max(downsample, 1)):
            last = k == max(downsample, 1) - 1
            nxt = out_channels if last else min(c * 2, out_channels)
            blocks.append(_Bottleneck(c, nxt, 2 if k < downsample else 1))
            c = nxt
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(out_channels, num_classes)

    def forward(self, x: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        feat = F.adaptive_avg_pool2d(self.blocks(x), 1).flatten(1)
        return feat, self.fc(feat)


@register_in_mmrazor
@MODELS.register_module()
class BYOTClassifier(BaseModel):
    """One classifier taught by its own deepest head (BYOT).

    Loss of a step, on one forward of one view:
    ``CE(deep) + sum_i [(1 - alpha) CE(head_i)
    + alpha tau^2 KL(softmax(deep / tau) || softmax(head_i / tau))
    + feature_weight ||f_i - f_deep||^2]`` where ``CE`` is the (soft, when
    mixup mixes the labels) cross-entropy with the labels, ``f`` are the
    pooled features that feed each classifier, and the deepest head's
    logits and features are detached where they serve as targets. Each term
    is logged on its own (``loss_label_deep``, ``loss_label_<i>``,
    ``loss_kl_<i>``, ``loss_feature_<i>``; heads numbered from the shallowest,
    1).

    Args:
        student (dict): The network, an mmpretrain classifier whose head
            ends in a linear classifier (e.g. ``ImageClassifier`` with
            ``ResNet_CIFAR``, ``GlobalAveragePooling``, ``LinearClsHead``).
        stages (Sequence[str], optional): The submodules (paths inside
            ``student``) after which an auxiliary head is attached. Defaults
            to every stage of an mmpretrain ResNet but the last
            (``backbone.layer1`` ... ``backbone.layer{L-1}``).
        tau (float): Temperature of the KL term. Defaults to 3.0 (MMRazor's
            BYOT config).
        alpha (float): Weight of the KL term on each shallow head; its label
            term takes ``1 - alpha``. Defaults to 0.3 (MMRazor's config).
        feature_weight (float): Weight of the L2 term. Defaults to 0.03
            (MMRazor's config).
        probe_size (int): Side of the blank image run once at build time to
            read each stage's width and resolution. Defaults to 32.
        data_preprocessor (dict, optional): Defaults to
            ``FunMatchDataPreprocessor`` with no teacher.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 student: dict,
                 stages: Optional[Sequence[str]] = None,
                 tau: float = 3.0,
                 alpha: float = 0.3,
                 feature_weight: float = 0.03,
                 probe_size: int = 32,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type=FunMatchDataPreprocessor)
        elif isinstance(data_preprocessor.get('type'), str):
            # mmengine's BaseModel builds it from its own registry, which
            # does not hold mmpretrain's classes outside a runner's scope.
            data_preprocessor = dict(
                data_preprocessor, type=MODELS.get(data_preprocessor['type']))
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if not tau > 0:
            raise ValueError(f'BYOTClassifier: tau must be > 0, got {tau}')
        if not 0 <= alpha <= 1:
            raise ValueError(
                f'BYOTClassifier: alpha is a mixing weight in [0, 1], got '
                f'{alpha}')
        self.student = MODELS.build(student)
        self.stages = list(stages) if stages else _resnet_stages(self.student)
        self.tau, self.alpha = float(tau), float(alpha)
        self.feature_weight = float(feature_weight)
        fc = classifier_layer(self.student)
        self.num_classes = fc.out_features
        shapes = self._stage_shapes(probe_size)
        deep_c, deep_h = feature_width(self.student), shapes[-1][1]
        self.aux_heads = nn.ModuleList()
        for c, h in shapes[:-1]:
            self.aux_heads.append(AuxHead(
                c, deep_c, int(round(math.log2(h / deep_h))),
                self.num_classes))

    def _stage_shapes(self, size: int) -> List[Tuple[int, int]]:
        """(channels, height) of each listed stage's output and of the
        last backbone output (what the deepest head pools), from one run
        of the backbone on a blank image."""
        was_training = self.student.training
        self.student.eval()
        try:
            with torch.no_grad(), self._stage_outputs() as outs:
                deep = self.student.backbone(torch.zeros(1, 3, size, size))
        finally:
            self.student.train(was_training)
        deep = deep[-1] if isinstance(deep, (tuple, list)) else deep
        shapes = [(outs[p].shape[1], outs[p].shape[2]) for p in self.stages]
        return shapes + [(deep.shape[1], deep.shape[2])]

    @contextlib.contextmanager
    def _stage_outputs(self) -> Iterator[Dict[str, torch.Tensor]]:
        """Keeps each listed stage's output while the block runs."""
        outs: Dict[str, torch.Tensor] = {}
        handles = []
        for path in self.stages:
            try:
                module = self.student.get_submodule(path)
            except AttributeError as err:
                raise ValueError(
                    f'BYOTClassifier: the student has no submodule {path!r} '
                    f'for stages ({err}); name its stages, e.g. '
                    f'backbone.layer1.') from None

            def keep(m, args, out, path=path):
                outs[path] = out
            handles.append(module.register_forward_hook(keep))
        try:
            yield outs
        finally:
            for h in handles:
                h.remove()

    def trainable_modules(self) -> List[nn.Module]:
        """The network and its auxiliary heads
        (FunMatchOptimWrapperConstructor)."""
        return [self.student, self.aux_heads]

    # -- forward --------------------------------------------------------------
    @staticmethod
    def _view(inputs: Union[dict, torch.Tensor]) -> torch.Tensor:
        return inputs['student'] if isinstance(inputs, dict) else inputs

    def heads(self, view: torch.Tensor
              ) -> Tuple[List[Tuple[torch.Tensor, torch.Tensor]],
                         Tuple[torch.Tensor, torch.Tensor]]:
        """One forward of the network: ``(features, logits)`` of every
        auxiliary head (shallowest first) and of the deepest head."""
        with self._stage_outputs() as outs, record_features(
                dict(deep=self.student)) as feats:
            logits = output_logits(self.student(view, mode='tensor'))
        aux = [head(outs[p]) for head, p in zip(self.aux_heads, self.stages)]
        return aux, (feats['deep'], logits)

    def forward(self, inputs: Union[dict, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """'loss' (:meth:`loss`), 'predict' (:meth:`predict`), 'tensor' (the
        deepest head's logits: the network as exported)."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return output_logits(self.student(self._view(inputs),
                                              mode='tensor'))
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: Union[dict, torch.Tensor],
             data_samples: Optional[List[DataSample]] = None) -> dict:
        """The labels on every head; the deepest head's softened
        distribution and features on each shallow one."""
        aux, (deep_feat, deep_logits) = self.heads(self._view(inputs))
        scores = _label_scores(data_samples, self.num_classes)
        if scores is None:
            raise ValueError(
                'BYOTClassifier learns from labels: the training samples '
                'carry none; use a labelled train set.')
        scores = scores.to(deep_logits.device)
        losses = dict(loss_label_deep=soft_cross_entropy(deep_logits,
                                                         scores))
        for i, (feat, logits) in enumerate(aux, start=1):
            losses[f'loss_label_{i}'] = (1 - self.alpha) * soft_cross_entropy(
                logits, scores)
            losses[f'loss_kl_{i}'] = self.alpha * kl_divergence_t(
                logits, deep_logits.detach(), self.tau)
            losses[f'loss_feature_{i}'] = self.feature_weight * (
                feat.float() - deep_feat.detach().float()).pow(2).sum(
                    1).mean()
        return losses

    def predict(self, inputs: Union[dict, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """The deepest head's prediction per sample, each auxiliary head's
        logits attached as ``aux_logits`` (heads x classes) for
        ``AuxHeadAccuracy``."""
        aux, (_, logits) = self.heads(self._view(inputs))
        scores = F.softmax(logits.float(), dim=1)
        aux_logits = torch.stack([a[1].float() for a in aux], 1)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(logits.size(0))]
        for i, sample in enumerate(data_samples):
            sample.set_pred_score(scores[i]).set_pred_label(
                scores[i].argmax(0, keepdim=True))
            sample.set_field(aux_logits[i], 'aux_logits')
        return data_samples


def soft_cross_entropy(logits: torch.Tensor,
                       scores: torch.Tensor) -> torch.Tensor:
    """``-(scores * log_softmax(logits)).sum(1).mean()``, in fp32 (one-hot
    scores give the ordinary cross-entropy)."""
    return -(scores.float() * F.log_softmax(logits.float(), 1)).sum(1).mean()


def _resnet_stages(student: nn.Module) -> List[str]:
    """Every stage of an mmpretrain ResNet backbone but the last."""
    names = getattr(getattr(student, 'backbone', None), 'res_layers', None)
    if not names or len(names) < 2:
        raise ValueError(
            f'BYOTClassifier: cannot find the stages of '
            f'{type(getattr(student, "backbone", student)).__name__}; give '
            f'stages=[...] (submodule paths, e.g. backbone.layer1).')
    return [f'backbone.{n}' for n in names[:-1]]
