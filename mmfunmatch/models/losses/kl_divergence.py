from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from mmfunmatch.registry import register_in_mmrazor

_REDUCTIONS = ('batchmean', 'mean', 'sum', 'none')


def kl_divergence_t(preds_S: torch.Tensor,
                    preds_T: torch.Tensor,
                    tau: float = 1.0,
                    reduction: str = 'batchmean') -> torch.Tensor:
    """tau^2 * KL(softmax(T / tau) || softmax(S / tau)), computed in fp32.

    Args:
        preds_S (Tensor): Student logits, shape (N, C).
        preds_T (Tensor): Teacher logits, the same shape.
        tau (float): Temperature applied to both sides.
        reduction (str): 'batchmean' (sum over classes, mean over samples),
            'mean' (mean over all elements), 'sum', or 'none' (per sample).
    """
    if preds_S.shape != preds_T.shape:
        raise ValueError(
            f'KLDivergenceT needs student and teacher logits of the same '
            f'shape, got student {tuple(preds_S.shape)} and teacher '
            f'{tuple(preds_T.shape)}. Flatten (N, C, 1, 1) outputs to (N, C) '
            f'and give both models the same number of classes.')
    log_p_s = F.log_softmax(preds_S.float() / tau, dim=1)
    log_p_t = F.log_softmax(preds_T.detach().float() / tau, dim=1)
    # p_t * (log p_t - log p_s); exp of a log-softmax is stable where p_t = 0.
    pointwise = log_p_t.exp() * (log_p_t - log_p_s)
    per_sample = pointwise.flatten(1).sum(1) * tau**2
    if reduction == 'batchmean':
        return per_sample.mean()
    if reduction == 'mean':
        return per_sample.sum() / pointwise.numel()
    if reduction == 'sum':
        return per_sample.sum()
    return per_sample


@register_in_mmrazor
@MODELS.register_module()
class KLDivergenceT(nn.Module):
    """Distillation loss: temperature-scaled KL from teacher to student.

    ``loss_weight * tau^2 * KL(softmax(T / tau) || softmax(S / tau))``.
    The teacher side is detached. Inputs of any float dtype are promoted to
    fp32, so fp16/bf16 logits do not overflow in the softmax.

    Args:
        tau (float): Temperature, applied to both sides. Defaults to 1.0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        reduction (str): One of 'batchmean', 'mean', 'sum', 'none'.
            Defaults to 'batchmean'.
    """

    def __init__(self,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 reduction: str = 'batchmean') -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f'KLDivergenceT: tau must be > 0, got {tau}')
        if reduction not in _REDUCTIONS:
            raise ValueError(f'KLDivergenceT: reduction must be one of '
                             f'{_REDUCTIONS}, got {reduction!r}')
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)
        self.reduction = reduction

    def forward(self,
                preds_S: torch.Tensor,
                preds_T: torch.Tensor,
                reduction_override: Optional[str] = None) -> torch.Tensor:
        """Loss of student logits ``preds_S`` against teacher ``preds_T``."""
        reduction = reduction_override or self.reduction
        return self.loss_weight * kl_divergence_t(preds_S, preds_T, self.tau,
                                                  reduction)
