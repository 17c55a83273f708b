"""How far the teacher's fast path (low-precision autocast, channels_last)
may move its outputs, and a check that it stayed within that.

The bound is derived from the number format, not read off one machine:
under autocast each conv/linear layer rounds its input and its weights to the
low-precision format (relative error at most the unit roundoff ``u`` each,
``u = 2**-8`` for bf16 and ``2**-11`` for fp16) and accumulates in fp32. To
first order the errors of successive layers add up (normalisation layers keep
the scale from compounding), so the logits move by at most
``L * 2 * u`` times their scale, for ``L`` conv/linear layers. Measured
errors are far smaller (0.8 % of the logit scale for the demo teacher on a
2-core x86 CPU, against 17 % allowed); a broken path (a memory format read
the wrong way, a dropped normalisation, fp16 overflow) moves them by 100 %
or more.
"""
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11,
                 torch.float32: 2.0**-24}


def rounding_error_bound(model: nn.Module, dtype: torch.dtype) -> float:
    """The first-order bound on ``max |delta logit| / max |logit|`` when
    ``model`` runs under ``dtype`` autocast (see the module docstring)."""
    layers = sum(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
                 for m in model.modules())
    return max(layers, 1) * 2 * UNIT_ROUNDOFF[dtype]


def fast_path_fidelity(ref_logits: torch.Tensor,
                       fast_logits: torch.Tensor) -> Dict[str, float]:
    """How far the fast path moves a teacher's outputs.

    Returns:
        dict: ``top1_agreement`` (fraction of equal argmax),
        ``max_abs_dp`` (largest change of a softmax probability) and
        ``max_abs_dlogit``.
    """
    ref, fast = ref_logits.float(), fast_logits.float()
    return dict(
        top1_agreement=(ref.argmax(1) == fast.argmax(1)).float().mean().item(),
        max_abs_dp=(F.softmax(ref, 1) - F.softmax(fast, 1)).abs().max().item(),
        max_abs_dlogit=(ref - fast).abs().max().item())


def fast_path_violations(ref_logits: torch.Tensor,
                         fast_logits: torch.Tensor,
                         rel_bound: float) -> List[str]:
    """What is wrong with fast-path logits against the fp32 ones; empty when
    they are within ``rel_bound`` (from :func:`rounding_error_bound`).

    Checked: every output finite; ``max |delta logit| <= rel_bound * max
    |logit|``; and no top-1 change on a sample whose fp32 top-1 margin is
    more than twice that bound (rounding within the bound cannot flip it).
    Near-tied samples may flip: bf16 cannot promise their order.
    """
    ref, fast = ref_logits.float(), fast_logits.float()
    problems = []
    if not torch.isfinite(fast).all():
        problems.append(f'{int((~torch.isfinite(fast)).sum())} non-finite '
                        f'outputs (overflow in the low-precision format?)')
    bound = rel_bound * ref.abs().max().item()
    err = (fast - ref).abs().max().item()
    if not err <= bound:  # NaN fails too
        problems.append(f'max |delta logit| {err:.3g} exceeds the rounding '
                        f'bound {bound:.3g} ({rel_bound:.3g} x max |logit|)')
    top2 = ref.topk(2, dim=1).values
    sure = (top2[:, 0] - top2[:, 1]) > 2 * bound
    flips = int(((ref.argmax(1) != fast.argmax(1)) & sure).sum())
    if flips:
        problems.append(f'{flips} of {int(sure.sum())} samples with an fp32 '
                        f'top-1 margin above {2 * bound:.3g} changed top-1')
    return problems
