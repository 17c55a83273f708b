"""How far a classifier's confidences are from its accuracy, and whether
its logits carry the fingerprint of label smoothing.

Measures on (N, C) logits and (N,) labels, usually a teacher's on the
validation split, before distilling from it:

- **Calibration** (Guo et al. 2017): :func:`nll`, :func:`reliability_bins`,
  :func:`expected_calibration_error` (15 equal-width confidence bins),
  :func:`fit_temperature` (one temperature fitted by NLL) and
  :func:`calibration` (all of them before and after that temperature).
- **Label smoothing** (Muller et al. 2019): a teacher trained with label
  smoothing distils worse, and wants a distillation temperature near 1
  (Chandrasegaran et al. 2022). Its fingerprint and the decision rule are
  documented at :func:`label_smoothing_fingerprint`;
  :func:`recommend_tau` turns it and the fitted temperature into the
  distillation temperature to start from.

The teacher report (``python tools/teacher_report.py``, in
projects/funmatch_paper/teacher_report.py) runs them on the teacher of a
config and writes them out with figures.
"""
import math
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F

N_BINS = 15
# Decision rule of label_smoothing_fingerprint (derivation there).
LS_MIN_UNIFORMITY = 0.90
LS_MAX_CORR = 0.0
# Temperatures the paper's small-data runs chose from (docs/method.md).
PAPER_TAUS = (1.0, 2.0, 5.0, 10.0)
# Fit the temperature within these bounds (a fit at a bound is reported).
T_BOUNDS = (0.01, 100.0)


# -- calibration -------------------------------------------------------------
def nll(logits: torch.Tensor, labels: torch.Tensor,
        temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / T)."""
    return F.cross_entropy(logits.double() / temperature, labels).item()


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor,
                     n_bins: int = N_BINS) -> Dict[str, np.ndarray]:
    """Top-1 confidence and accuracy per equal-width confidence bin.

    Bin ``b`` holds the samples whose confidence lies in
    ``(b / n_bins, (b + 1) / n_bins]``.

    Args:
        probs (Tensor): (N, C) predicted probabilities.
        labels (Tensor): (N,) true classes.
        n_bins (int): Number of bins. Defaults to 15.

    Returns:
        dict: ``edges`` (n_bins + 1,), ``count``, ``accuracy`` and
        ``confidence`` (n_bins,; NaN for empty bins).
    """
    conf, pred = probs.double().max(1)
    correct = (pred == labels).double()
    idx = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.bincount(idx, minlength=n_bins).double()
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    safe = count.clamp_min(1)
    empty = count == 0
    return dict(
        edges=np.linspace(0.0, 1.0, n_bins + 1),
        count=count.numpy(),
        accuracy=torch.where(empty, torch.nan, acc_sum / safe).numpy(),
        confidence=torch.where(empty, torch.nan, conf_sum / safe).numpy())


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                               n_bins: int = N_BINS) -> float:
    """ECE: the count-weighted mean of |accuracy - confidence| over bins."""
    bins = reliability_bins(probs, labels, n_bins)
    used = bins['count'] > 0
    weights = bins['count'][used] / bins['count'].sum()
    gaps = np.abs(bins['accuracy'][used] - bins['confidence'][used])
    return float((weights * gaps).sum())


def fit_temperature(logits: torch.Tensor,
                    labels: torch.Tensor,
                    bounds: Tuple[float, float] = T_BOUNDS,
                    tol: float = 1e-7) -> Tuple[float, bool]:
    """The temperature T that minimises NLL(softmax(logits / T)).

    The NLL is convex in the inverse temperature 1/T (a log-sum-exp of
    linear functions minus a linear function), so it is unimodal in log T and
    a golden-section search over log T finds the global minimum within
    ``bounds``.

    Returns:
        tuple: The temperature and whether it sits at a bound (no interior
        minimum: e.g. a teacher that classifies every val image correctly
        keeps lowering its NLL as T -> 0).
    """
    z = logits.double()

    def loss(log_t: float) -> float:
        return F.cross_entropy(z / math.exp(log_t), labels).item()

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > tol:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    log_t = (lo + hi) / 2.0
    margin = 1e-3
    at_bound = (log_t - math.log(bounds[0]) < margin
                or math.log(bounds[1]) - log_t < margin)
    return math.exp(log_t), at_bound


def calibration(logits: torch.Tensor, labels: torch.Tensor,
                n_bins: int = N_BINS) -> dict:
    """Accuracy, NLL and ECE at T = 1 and at the NLL-fitted temperature."""
    temperature, at_bound = fit_temperature(logits, labels)
    out = dict(temperature=temperature, temperature_at_bound=at_bound)
    for key, t in (('before', 1.0), ('after', temperature)):
        probs = F.softmax(logits.double() / t, dim=1)
        out[key] = dict(
            temperature=t,
            accuracy=(probs.argmax(1) == labels).double().mean().item(),
            nll=nll(logits, labels, t),
            ece=expected_calibration_error(probs, labels, n_bins),
            bins=reliability_bins(probs, labels, n_bins))
    return out


# -- label smoothing ---------------------------------------------------------
def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation (ties are rare for float logits)."""
    if a.numel() < 3:
        return float('nan')
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def label_smoothing_fingerprint(
        logits: torch.Tensor,
        labels: torch.Tensor,
        min_uniformity: float = LS_MIN_UNIFORMITY,
        max_corr: float = LS_MAX_CORR) -> dict:
    """Whether the logits look like those of a label-smoothed model.

    What label smoothing does: with smoothing eps over C classes the target
    is ``1 - eps + eps / C`` for the true class and ``eps / C`` for every
    other class, and the gradient of the loss with respect to a non-target
    logit is ``p_j - eps / C``. It pushes every non-target probability to the
    same value, pulling low ones *up*, and pins the gap between the target
    logit and the (equal) non-target logits at the finite value
    ``g* = log(1 + C (1 - eps) / eps)`` (4.51 for eps = 0.1, C = 10): each
    training sample converges to one point, (gap g*, non-target spread 0).
    Cross-entropy has only the push-down term ``p_j`` (vanishing as
    ``p_j -> 0``) and no finite optimum: non-target logits keep the spread
    the features give them (class similarity, what distillation transfers)
    and a sample's logits grow along a ray, gap and spread together (Muller
    et al. 2019: smoothing erases that information and collapses the
    non-target logits to a common value).

    Measured on the val images the model classifies correctly, per sample
    (``y`` the label, ``j`` the other classes):

    - ``uniformity``: entropy of the renormalised non-target distribution
      ``p_j / (1 - p_y)`` over its maximum ``log(C - 1)``; 1 at the smoothing
      optimum. Near 1 it is ``1 - s^2 / (2 log(C - 1))`` with ``s`` the std
      of the non-target logits.
    - ``gap``: target logit minus the mean non-target logit, and its spread
      across samples.
    - ``spread``: the std ``s`` of the non-target logits; ``collapse`` is
      ``s / gap`` (0 at the smoothing optimum).

    Decision rule, one condition per effect of smoothing:

    1. *Flat floor*: median uniformity >= ``min_uniformity`` (0.90, i.e.
       ``s`` <= 0.66 nats for C = 10: non-target probabilities within a
       factor of about 2 of each other). Cross-entropy has no force that
       flattens small non-target probabilities.
    2. *Pinned, not scaled*: the rank correlation across samples between
       gap and spread is <= ``max_corr`` (0). Under smoothing the samples
       that reached a larger gap are the converged ones, with less spread
       (negative); under cross-entropy logit vectors differ mostly in scale,
       so the spread grows with the gap (positive). This condition is blind
       to a global temperature, so a flat floor that comes from a small
       logit scale (an untrained, or temperature-divided cross-entropy
       model) is not flagged.

    ``eps_implied`` inverts ``g*`` at the median gap: a rough estimate, only
    meaningful for a flagged model.

    Args:
        logits (Tensor): (N, C) logits, C >= 3.
        labels (Tensor): (N,) true classes.
        min_uniformity (float): Defaults to 0.90.
        max_corr (float): Defaults to 0.

    Returns:
        dict: aggregate statistics, per-sample arrays ``uniformity_samples``,
        ``spread_samples`` and ``gap_samples``, and ``flagged`` (bool) with
        ``reason``.
    """
    num_classes = logits.size(1)
    if num_classes < 3:
        raise ValueError('the label-smoothing fingerprint needs at least 3 '
                         'classes (2 non-target classes)')
    z = logits.double()
    correct = z.argmax(1) == labels
    n_correct = int(correct.sum())
    z, y = z[correct], labels[correct]
    others = ~F.one_hot(y, num_classes).bool()
    nz = z[others].view(-1, num_classes - 1)
    # Renormalised non-target distribution = softmax of non-target logits.
    log_q = F.log_softmax(nz, dim=1)
    entropy = -(log_q.exp() * log_q).sum(1)
    uniformity = entropy / math.log(num_classes - 1)
    gap = z.gather(1, y[:, None])[:, 0] - nz.mean(1)
    spread = nz.std(1, unbiased=False)
    collapse = spread / gap.clamp_min(1e-12)

    def agg(fn, x: torch.Tensor) -> float:
        return float(fn(x)) if x.numel() else float('nan')

    stats = dict(
        num_classes=num_classes,
        n_correct=n_correct,
        entropy_mean=agg(torch.mean, entropy),
        entropy_max=math.log(num_classes - 1),
        uniformity_mean=agg(torch.mean, uniformity),
        uniformity_median=agg(torch.median, uniformity),
        gap_mean=agg(torch.mean, gap),
        gap_median=agg(torch.median, gap),
        gap_std=float(gap.std()) if n_correct > 1 else float('nan'),
        spread_mean=agg(torch.mean, spread),
        collapse_median=agg(torch.median, collapse),
        gap_spread_corr=_spearman(gap, spread),
        min_uniformity=min_uniformity,
        max_corr=max_corr,
        uniformity_samples=uniformity.numpy(),
        spread_samples=spread.numpy(),
        gap_samples=gap.numpy())
    stats['gap_cv'] = stats['gap_std'] / stats['gap_mean']
    g = stats['gap_median']
    stats['eps_implied'] = (num_classes / (math.exp(min(g, 700.0)) +
                                           num_classes - 1)
                            if math.isfinite(g) else float('nan'))
    # A handful of correct predictions says nothing about the training loss.
    min_correct = max(20, 2 * num_classes)
    if n_correct < min_correct:
        stats['flagged'] = False
        stats['reason'] = (f'undetermined: only {n_correct} correct val '
                           f'predictions (need {min_correct})')
        return stats
    u, rho = stats['uniformity_median'], stats['gap_spread_corr']
    flat = u >= min_uniformity
    pinned = rho <= max_corr
    stats['flagged'] = bool(flat and pinned)
    if flat and pinned:
        stats['reason'] = (
            f'flat non-target floor (median uniformity {u:.3f} >= '
            f'{min_uniformity}) and the spread shrinks as the gap grows '
            f'(rank correlation {rho:+.2f} <= {max_corr:g}); the median gap '
            f'{g:.2f} matches smoothing eps ~ {stats["eps_implied"]:.2f}')
    elif flat:
        stats['reason'] = (
            f'flat non-target floor (median uniformity {u:.3f}) but the '
            f'spread grows with the gap (rank correlation {rho:+.2f} > '
            f'{max_corr:g}): a small logit scale, not the smoothing shape')
    else:
        stats['reason'] = (
            f'non-target probabilities keep structure (median uniformity '
            f'{u:.3f} < {min_uniformity}; gap-spread rank correlation '
            f'{rho:+.2f})')
    return stats


def recommend_tau(fingerprint: dict, temperature: float) -> Tuple[float, str]:
    """The distillation temperature to start from, and why.

    A label-smoothed teacher: tau = 1 (a higher tau only flattens targets
    whose non-target part carries no information; Muller et al. 2019,
    Chandrasegaran et al. 2022). Otherwise the value of the paper's grid
    (1, 2, 5, 10) nearest, in log scale, to the calibrated temperature (at
    least 1): distilling at it hands the student the teacher's honest
    confidences. A heuristic starting point; the paper tunes tau per data
    set.
    """
    if fingerprint.get('flagged'):
        return 1.0, ('label-smoothed teacher: distil at tau near 1 '
                     '(Muller et al. 2019; Chandrasegaran et al. 2022)')
    t = max(1.0, temperature)
    tau = min(PAPER_TAUS, key=lambda v: abs(math.log(v) - math.log(t)))
    return tau, (f'no label-smoothing fingerprint: the paper\'s tau grid '
                 f'value nearest the calibrated temperature {temperature:.2f}'
                 f' (tune in {{1, 2, 5, 10}} as the paper does)')
