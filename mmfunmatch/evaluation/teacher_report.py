"""Teacher report: is a teacher fit to distil from, and at which temperature?

Three questions about a trained teacher, answered on the validation split:

1. **Calibration** (Guo et al. 2017): accuracy, NLL and expected calibration
   error (ECE, 15 equal-width confidence bins) before and after one
   temperature fitted by NLL on the val logits.
2. **Label smoothing** (Muller et al. 2019): a teacher trained with label
   smoothing distils worse, and wants a distillation temperature near 1
   (Chandrasegaran et al. 2022). Its fingerprint and the decision rule are
   documented at :func:`label_smoothing_fingerprint`.
3. **The inputs function matching queries**: mixed images (one weight per
   batch, each image mixed with its neighbour in the batch rolled by one, as
   ``UniformMixup`` does) at several weights, and the student's resolution.

``teacher_report`` runs all three from a config (a plain mmpretrain
classifier, or a ``FunMatchDistiller`` whose first teacher is reported) and
writes a markdown file, PNG figures and a JSON of every number.
"""
import copy
import json
import math
import os
import os.path as osp
from typing import (Callable, Dict, Iterable, List, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

N_BINS = 15
DEFAULT_LAMS = (1.0, 0.9, 0.75, 0.5)
# Decision rule of label_smoothing_fingerprint (derivation there).
LS_MIN_UNIFORMITY = 0.90
LS_MAX_CORR = 0.0
# Temperatures the paper's small-data runs chose from (docs/method.md).
PAPER_TAUS = (1.0, 2.0, 5.0, 10.0)
# Fit the temperature within these bounds (a fit at a bound is reported).
T_BOUNDS = (0.01, 100.0)

Size = Tuple[int, int]


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


# -- the inputs function matching queries -------------------------------------
def mix_rolled(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Mix each sample with its neighbour, the batch rolled by one (as
    ``UniformMixup``)."""
    return x if lam == 1.0 else lam * x + (1.0 - lam) * x.roll(1, dims=0)


def via_size(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Down- (or up-) sample ``x`` to ``size`` and back: what the teacher
    sees of an image that only holds the student's resolution."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    small = F.interpolate(x, size=size, mode='bilinear', align_corners=False,
                          antialias=True)
    return F.interpolate(small, size=x.shape[-2:], mode='bilinear',
                         align_corners=False, antialias=True)


class _QueryStats:
    """Running sums for one (input, lam) condition."""

    def __init__(self) -> None:
        self.n = 0
        self.sums = dict(acc_dominant=0.0, acc_either=0.0, entropy=0.0,
                         p_dominant=0.0, p_partner=0.0, same_class=0.0)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logp = F.log_softmax(logits.double(), dim=1)
        p = logp.exp()
        partner = labels.roll(1, dims=0)
        pred = p.argmax(1)
        s = self.sums
        s['acc_dominant'] += (pred == labels).double().sum().item()
        s['acc_either'] += ((pred == labels) |
                            (pred == partner)).double().sum().item()
        s['entropy'] += (-(p * logp).sum(1)).sum().item()
        s['p_dominant'] += p.gather(1, labels[:, None]).sum().item()
        s['p_partner'] += p.gather(1, partner[:, None]).sum().item()
        s['same_class'] += (labels == partner).double().sum().item()
        self.n += labels.numel()

    def means(self) -> Dict[str, float]:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}


def collect(batches: Iterable[Tuple[torch.Tensor, torch.Tensor,
                                    Optional[Size]]],
            forward: Callable[[torch.Tensor], torch.Tensor],
            lams: Sequence[float] = DEFAULT_LAMS,
            max_images: Optional[int] = None
            ) -> Tuple[torch.Tensor, torch.Tensor, List[dict]]:
    """Run the teacher over the val batches: clean logits for calibration
    and the fingerprint, and accuracy / entropy on mixed images.

    Args:
        batches: ``(x, labels, student_size)`` per batch: the teacher's
            normalised input (N, 3, H, W) in a random order (the partner of
            an image is its predecessor in the batch), the labels, and the
            student's input size when it differs from the teacher's (else
            None).
        forward: The teacher: normalised images -> logits.
        lams (Sequence[float]): Mixing weights of the dominant image.
        max_images (int, optional): Stop after this many images.

    Returns:
        tuple: clean logits (N, C), labels (N,), and one row per (input,
        lam) with ``input`` ('teacher size' or 'student size HxW'), ``lam``,
        ``acc_dominant`` and ``acc_either`` (top-1 is the dominant image's /
        either image's label), mean ``entropy`` (nats), mean ``p_dominant``
        and ``p_partner`` and ``n``.
    """
    logits_all, labels_all = [], []
    stats: Dict[Tuple[str, float], _QueryStats] = {}
    seen = 0
    with torch.no_grad():
        for x, labels, student_size in batches:
            if max_images is not None and seen >= max_images:
                break
            if max_images is not None:
                x, labels = x[:max_images - seen], labels[:max_images - seen]
            seen += labels.numel()
            labels = labels.to(x.device)
            inputs = [('teacher size', None)]
            if student_size is not None:
                inputs.append(
                    (f'student size {student_size[0]}x{student_size[1]}',
                     student_size))
            for name, size in inputs:
                for lam in lams:
                    view = mix_rolled(x, float(lam))
                    if size is not None:
                        view = via_size(view, size)
                    out = forward(view).float()
                    stats.setdefault((name, float(lam)),
                                     _QueryStats()).add(out, labels)
                    if size is None and lam == 1.0:
                        logits_all.append(out.cpu())
                        labels_all.append(labels.cpu())
            if not any(lam == 1.0 for lam in lams):
                logits_all.append(forward(x).float().cpu())
                labels_all.append(labels.cpu())
    rows = []
    for (name, lam), s in stats.items():
        rows.append(dict(input=name, lam=lam, n=s.n, **s.means()))
    return torch.cat(logits_all), torch.cat(labels_all), rows


def analyse(logits: torch.Tensor, labels: torch.Tensor,
            query_rows: Optional[List[dict]] = None,
            n_bins: int = N_BINS) -> dict:
    """Calibration, fingerprint, recommendation and verdict from val logits.
    """
    calib = calibration(logits, labels, n_bins)
    fingerprint = label_smoothing_fingerprint(logits, labels)
    tau, why = recommend_tau(fingerprint, calib['temperature'])
    report = dict(calibration=calib, fingerprint=fingerprint,
                  queries=query_rows or [], tau=tau, tau_reason=why,
                  num_images=int(labels.numel()),
                  num_classes=int(logits.size(1)))
    report['verdict'] = verdict(report)
    return report


def verdict(report: dict) -> str:
    """One line: label smoothing, accuracy and calibration, tau, warnings."""
    calib, fp = report['calibration'], report['fingerprint']
    before, after = calib['before'], calib['after']
    head = ('LABEL-SMOOTHED teacher' if fp['flagged'] else
            'no label-smoothing fingerprint')
    if fp['reason'].startswith('undetermined'):
        head = 'label smoothing undetermined'
    t_note = (' (at the search bound)'
              if calib['temperature_at_bound'] else '')
    line = (f'{head}; val top-1 {100 * before["accuracy"]:.1f} %, ECE '
            f'{100 * before["ece"]:.1f} % -> {100 * after["ece"]:.1f} % at '
            f'T = {calib["temperature"]:.2f}{t_note}; recommended tau = '
            f'{report["tau"]:g}')
    warnings = []
    clean = {r['input']: r for r in report['queries'] if r['lam'] == 1.0}
    base = clean.get('teacher size')
    for name, row in clean.items():
        if base is not None and name != 'teacher size':
            drop = 100 * (base['acc_dominant'] - row['acc_dominant'])
            if drop > 5:
                warnings.append(f'loses {drop:.1f} points at the {name}')
    half = [r for r in report['queries']
            if r['lam'] == 0.5 and r['input'] == 'teacher size']
    if half and half[0]['acc_either'] < 0.5:
        warnings.append(f'names neither mixed image at lam 0.5 '
                        f'({100 * (1 - half[0]["acc_either"]):.0f} %)')
    if warnings:
        line += '; warning: ' + ', '.join(warnings)
    return line + '.'


# -- figures and markdown -----------------------------------------------------
def plot_reliability(calib: dict, path: str) -> None:
    """Reliability diagrams before and after temperature scaling."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, key in zip(axes, ('before', 'after')):
        part = calib[key]
        bins = part['bins']
        edges = bins['edges']
        width = edges[1] - edges[0]
        centres = edges[:-1] + width / 2
        acc = np.nan_to_num(bins['accuracy'])
        conf = np.nan_to_num(bins['confidence'])
        used = bins['count'] > 0
        ax.bar(centres[used], acc[used], width=width * 0.95,
               color='tab:blue', alpha=0.7, label='accuracy per bin')
        ax.vlines(centres[used], np.minimum(acc[used], conf[used]),
                  np.maximum(acc[used], conf[used]), color='tab:red', lw=2)
        ax.plot(centres[used], conf[used], 'o', color='tab:red', ms=4,
                label='mean confidence (red: gap)')
        ax.plot([0, 1], [0, 1], 'k--', lw=1, label='perfect calibration')
        # Where the samples are: most sit in the last bin.
        share = bins['count'] / max(bins['count'].sum(), 1)
        ax.step(edges, np.append(share, share[-1]), where='post',
                color='grey', lw=1, label='fraction of images')
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel='confidence (top-1 prob.)',
               title=f'T = {part["temperature"]:.2f}: ECE '
               f'{100 * part["ece"]:.2f} %, NLL {part["nll"]:.3f}')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('accuracy')
    axes[0].legend(loc='upper left', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_fingerprint(fp: dict, path: str) -> None:
    """The two conditions of the rule: the uniformity histogram and the
    non-target spread against the gap, plus the gap histogram."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    u = np.asarray(fp['uniformity_samples'])
    gap = np.asarray(fp['gap_samples'])
    spread = np.asarray(fp['spread_samples'])
    if u.size:
        axes[0].hist(u, bins=40, range=(0, 1), color='tab:blue', alpha=0.8)
        axes[2].hist(gap, bins=40, color='tab:blue', alpha=0.8)
        axes[1].scatter(gap, spread, s=6, alpha=0.5)
    axes[0].axvline(fp['min_uniformity'], color='tab:red', ls='--',
                    label=f'rule: median >= {fp["min_uniformity"]:g}')
    axes[0].axvline(fp['uniformity_median'], color='k', lw=1,
                    label=f'median {fp["uniformity_median"]:.3f}')
    axes[0].legend(fontsize=8)
    axes[0].set(xlabel='non-target uniformity H / log(C-1)',
                ylabel='correct val images')
    axes[1].set(xlabel='gap: top logit - mean non-target logit',
                ylabel='std of the non-target logits',
                title=f'rank correlation {fp["gap_spread_corr"]:+.2f} '
                f'(rule: <= {fp["max_corr"]:g})')
    axes[2].set(xlabel='gap: top logit - mean non-target logit',
                ylabel='correct val images')
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle('label-smoothing fingerprint: ' +
                 ('FLAGGED' if fp['flagged'] else 'not flagged'))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_queries(rows: List[dict], path: str) -> None:
    """Accuracy and entropy against the mixing weight, per input size."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for name in dict.fromkeys(r['input'] for r in rows):
        sel = sorted((r for r in rows if r['input'] == name),
                     key=lambda r: r['lam'])
        lams = [r['lam'] for r in sel]
        axes[0].plot(lams, [100 * r['acc_dominant'] for r in sel], 'o-',
                     label=f'{name}: dominant label')
        axes[0].plot(lams, [100 * r['acc_either'] for r in sel], 's--',
                     label=f'{name}: either label')
        axes[1].plot(lams, [r['entropy'] for r in sel], 'o-', label=name)
    axes[0].set(xlabel='mixing weight lam of the dominant image',
                ylabel='teacher top-1 (%)', title='accuracy on mixed images')
    axes[1].set(xlabel='mixing weight lam of the dominant image',
                ylabel='mean entropy (nats)', title='teacher entropy')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.invert_xaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def to_markdown(report: dict, figures: Dict[str, str]) -> str:
    """The report as markdown; ``figures`` maps a figure to its file name."""
    calib, fp = report['calibration'], report['fingerprint']
    lines = [f'# Teacher report: {report.get("name", "teacher")}', '']
    meta = report.get('meta', {})
    for key, value in meta.items():
        lines.append(f'- {key}: {value}')
    lines += [
        f'- val images: {report["num_images"]}, classes: '
        f'{report["num_classes"]}', '', f'**Verdict:** {report["verdict"]}',
        '', '## Calibration', '',
        f'Expected calibration error over '
        f'{len(calib["before"]["bins"]["count"])} equal-width confidence '
        'bins, before and after one temperature fitted by NLL on these val '
        'logits (Guo et al. 2017).', '',
        '| | temperature | top-1 (%) | NLL | ECE (%) |',
        '| --- | --- | --- | --- | --- |'
    ]
    for key in ('before', 'after'):
        part = calib[key]
        lines.append(f'| {key} | {part["temperature"]:.3f} | '
                     f'{100 * part["accuracy"]:.2f} | {part["nll"]:.4f} | '
                     f'{100 * part["ece"]:.2f} |')
    if calib['temperature_at_bound']:
        lines += ['', 'The fitted temperature sits at the search bound: the '
                  'NLL has no interior minimum on these logits.']
    lines += ['', f'![reliability diagram]({figures["reliability"]})', '']

    lines += [
        '## Label-smoothing fingerprint', '',
        f'On the {fp["n_correct"]} val images the teacher classifies '
        'correctly. Label smoothing pulls every non-target logit to one '
        'common value at a fixed gap below the target (Muller et al. 2019); '
        'cross-entropy leaves the non-target logits spread.', '',
        '| statistic | value | label-smoothing optimum |',
        '| --- | --- | --- |',
        f'| mean entropy of the renormalised non-target distribution (nats) '
        f'| {fp["entropy_mean"]:.3f} | {fp["entropy_max"]:.3f} = log(C-1) |',
        f'| uniformity (entropy / log(C-1)): median, mean | '
        f'{fp["uniformity_median"]:.3f}, {fp["uniformity_mean"]:.3f} | 1 |',
        f'| gap top logit - mean non-target logit: mean +- std across '
        f'samples (CV) | {fp["gap_mean"]:.2f} +- {fp["gap_std"]:.2f} '
        f'({fp["gap_cv"]:.2f}) | log(1 + C(1-eps)/eps), one value |',
        f'| std of the non-target logits within a sample (mean) | '
        f'{fp["spread_mean"]:.3f} | 0 |',
        f'| collapse = that std / gap (median) | '
        f'{fp["collapse_median"]:.3f} | 0 |',
        f'| rank correlation across samples of gap and that std | '
        f'{fp["gap_spread_corr"]:+.3f} | negative (samples converge to one '
        f'point) |',
        f'| smoothing eps implied by the median gap | '
        f'{fp["eps_implied"]:.3f} | eps |', '',
        f'Rule: flagged when the median uniformity is >= '
        f'{fp["min_uniformity"]:g} (a flat non-target floor) and the rank '
        f'correlation of gap and spread is <= {fp["max_corr"]:g} (the gap is '
        'pinned, not scaled; blind to the temperature). Derivation: '
        '`mmfunmatch.evaluation.teacher_report.label_smoothing_fingerprint`.'
        f' Result: **{"flagged" if fp["flagged"] else "not flagged"}**: '
        f'{fp["reason"]}.', '',
        f'Recommended distillation temperature: **tau = {report["tau"]:g}** '
        f'({report["tau_reason"]}).', '',
        f'![fingerprint]({figures["fingerprint"]})', ''
    ]

    if report['queries']:
        lines += [
            '## The inputs function matching queries', '',
            'Val images in a random order, each mixed with its predecessor '
            '(the batch rolled by one, as UniformMixup does) with weight lam '
            'on the dominant image; "student size" inputs are downsampled to '
            'the student\'s resolution and upsampled back.', '',
            '| input | lam | top-1 = dominant label (%) | top-1 = either '
            'label (%) | mean entropy (nats) | p(dominant) | p(partner) |',
            '| --- | --- | --- | --- | --- | --- | --- |'
        ]
        for r in report['queries']:
            lines.append(
                f'| {r["input"]} | {r["lam"]:g} | '
                f'{100 * r["acc_dominant"]:.1f} | '
                f'{100 * r["acc_either"]:.1f} | {r["entropy"]:.3f} | '
                f'{r["p_dominant"]:.3f} | {r["p_partner"]:.3f} |')
        same = report['queries'][0]['same_class']
        lines += ['', f'{100 * same:.1f} % of the pairs share a class.', '',
                  f'![mixed inputs]({figures["queries"]})', '']
    return '\n'.join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def write_report(report: dict, out_dir: str,
                 prefix: str = 'teacher_report') -> Dict[str, str]:
    """Write ``prefix``.md, ``prefix``.json and the PNG figures to
    ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    figures = dict(reliability=f'{prefix}_reliability.png',
                   fingerprint=f'{prefix}_fingerprint.png',
                   queries=f'{prefix}_queries.png')
    plot_reliability(report['calibration'],
                     osp.join(out_dir, figures['reliability']))
    plot_fingerprint(report['fingerprint'],
                     osp.join(out_dir, figures['fingerprint']))
    paths = {k: osp.join(out_dir, v) for k, v in figures.items()}
    if report['queries']:
        plot_queries(report['queries'], paths['queries'])
    else:
        del paths['queries']
    paths['markdown'] = osp.join(out_dir, f'{prefix}.md')
    with open(paths['markdown'], 'w') as f:
        f.write(to_markdown(report, figures) + '\n')
    fp = {k: v for k, v in report['fingerprint'].items()
          if not k.endswith('_samples')}
    paths['json'] = osp.join(out_dir, f'{prefix}.json')
    with open(paths['json'], 'w') as f:
        json.dump(_jsonable(dict(report, fingerprint=fp)), f, indent=1)
    return paths


# -- the teacher of a config --------------------------------------------------
def _output_logits(out) -> torch.Tensor:
    # 'tensor' mode may return a tuple ending in the logits.
    return out[-1] if isinstance(out, (tuple, list)) else out


def load_teacher(cfg, checkpoint: Optional[str] = None,
                 device: str = 'cpu'
                 ) -> Tuple[nn.Module, Callable[[dict], Tuple[
                     torch.Tensor, Optional[Size]]], str]:
    """The teacher of a config and how to turn a val batch into its input.

    Args:
        cfg (Config): A plain mmpretrain classifier config (the model itself
            is the teacher) or a ``FunMatchDistiller`` config (its
            ``teachers[0]``).
        checkpoint (str, optional): Weights; defaults to the distiller
            config's ``teachers[0].checkpoint`` (required for a plain
            config).
        device (str): Where to run.

    Returns:
        tuple: the teacher in eval mode, a function mapping a collated val
        batch to ``(normalised teacher input, student size or None)``, and
        the checkpoint used.
    """
    from mmpretrain.registry import MODELS

    from mmfunmatch.models.data_preprocessors import FunMatchDataPreprocessor
    from mmfunmatch.models.weights import load_weights

    from mmfunmatch.models.teacher_spec import teacher_specs

    model_cfg = cfg.model
    if 'teachers' in model_cfg:  # a distiller config
        teachers = teacher_specs(copy.deepcopy(model_cfg['teachers']))
        checkpoint = checkpoint or teachers[0].checkpoint
        if not checkpoint:
            raise ValueError(f'{teachers[0].key}.checkpoint is not set; '
                             f'give the teacher weights with --checkpoint')
        teacher = MODELS.build(teachers[0].model)
        load_weights(teacher, checkpoint, name=teachers[0].key)
        dp = dict(model_cfg.get('data_preprocessor') or {})
        preprocessor = FunMatchDataPreprocessor(
            mean=dp.get('mean', (127.5, 127.5, 127.5)),
            std=dp.get('std', (127.5, 127.5, 127.5)),
            teachers=[t.view for t in teachers],
            to_rgb=dp.get('to_rgb', True)).to(device)

        def prepare(batch: dict) -> Tuple[torch.Tensor, Optional[Size]]:
            inputs = preprocessor(batch, False)['inputs']
            x = inputs['teachers'][0]
            s_size = tuple(inputs['student'].shape[-2:])
            return x, (None if s_size == tuple(x.shape[-2:]) else s_size)
    else:
        checkpoint = checkpoint or cfg.get('load_from')
        if not checkpoint:
            raise ValueError('a plain classifier config needs the teacher '
                             'weights: give --checkpoint')
        teacher = MODELS.build(model_cfg)
        load_weights(teacher, checkpoint, name='teacher')
        teacher.data_preprocessor.to(device)

        def prepare(batch: dict) -> Tuple[torch.Tensor, Optional[Size]]:
            return teacher.data_preprocessor(batch, False)['inputs'], None

    teacher.to(device).eval()
    return teacher, prepare, checkpoint


def val_loader(cfg, batch_size: Optional[int] = None, num_workers: int = 0,
               seed: int = 0):
    """The config's val dataloader in a fixed random order: rolling a batch
    by one then pairs random images, as in training (the val set itself is
    usually sorted by class)."""
    from mmengine.runner import Runner
    dl = copy.deepcopy(cfg.get('val_dataloader') or cfg.test_dataloader)
    dl['sampler'] = dict(type='DefaultSampler', shuffle=True, seed=seed)
    dl['num_workers'] = num_workers
    dl['persistent_workers'] = num_workers > 0
    dl['pin_memory'] = False
    if batch_size:
        dl['batch_size'] = batch_size
    return Runner.build_dataloader(dl, seed=seed)


def teacher_report(config: Union[str, 'Config'],
                   checkpoint: Optional[str] = None,
                   out_dir: Optional[str] = None,
                   lams: Sequence[float] = DEFAULT_LAMS,
                   student_size: Optional[Union[int, Sequence[int]]] = None,
                   max_images: Optional[int] = None,
                   batch_size: Optional[int] = None,
                   device: Optional[str] = None,
                   cfg_options: Optional[dict] = None,
                   n_bins: int = N_BINS,
                   num_workers: int = 0,
                   prefix: str = 'teacher_report') -> dict:
    """Report on the teacher of ``config`` over its val split.

    Args:
        config (str | Config): A plain mmpretrain classifier config or a
            FunMatchDistiller config (its first teacher is reported).
        checkpoint (str, optional): Teacher weights (see
            :func:`load_teacher`).
        out_dir (str, optional): Write the markdown, JSON and PNGs here.
        lams (Sequence[float]): Mixing weights to query.
            Defaults to (1, 0.9, 0.75, 0.5).
        student_size (int | tuple, optional): The student's input size for
            a plain config (a distiller config gives its own).
        max_images (int, optional): Use at most this many val images.
        batch_size (int, optional): Override the val batch size.
        device (str, optional): Defaults to cuda when available.
        cfg_options (dict, optional): Merged into the config.
        n_bins (int): Calibration bins. Defaults to 15.
        num_workers (int): Dataloader workers. Defaults to 0.
        prefix (str): File name prefix of the outputs.
            Defaults to 'teacher_report'.

    Returns:
        dict: every number of the report (see :func:`analyse`), ``verdict``
        and, when written, ``paths``.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmfunmatch  # noqa: F401  (registers modules)
    name = osp.basename(config) if isinstance(config, str) else 'config'
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    teacher, prepare, ckpt = load_teacher(cfg, checkpoint, device)
    if isinstance(student_size, int):
        student_size = (student_size, student_size)

    def batches():
        for batch in val_loader(cfg, batch_size, num_workers):
            x, s_size = prepare(batch)
            labels = torch.cat([s.gt_label for s in batch['data_samples']])
            size = s_size or (tuple(student_size) if student_size else None)
            if size is not None and tuple(size) == tuple(x.shape[-2:]):
                size = None
            yield x, labels, size

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _output_logits(teacher(x, mode='tensor'))

    logits, labels, rows = collect(batches(), forward, lams, max_images)
    report = analyse(logits, labels, rows, n_bins)
    report['name'] = name
    report['meta'] = {'config': config if isinstance(config, str) else name,
                      'checkpoint': ckpt}
    if out_dir is not None:
        report['paths'] = write_report(report, out_dir, prefix)
    return report
