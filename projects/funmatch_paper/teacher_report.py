"""Teacher report: is a teacher fit to distil from, and at which temperature?

Three questions about a trained teacher, answered on the validation split:

1. **Calibration** (Guo et al. 2017): accuracy, NLL and expected calibration
   error (ECE, 15 equal-width confidence bins) before and after one
   temperature fitted by NLL on the val logits.
2. **Label smoothing** (Muller et al. 2019): a teacher trained with label
   smoothing distils worse, and wants a distillation temperature near 1
   (Chandrasegaran et al. 2022). Its fingerprint and the decision rule are
   documented at
   :func:`mmfunmatch.evaluation.calibration.label_smoothing_fingerprint`.
3. **The inputs function matching queries**: mixed images (one weight per
   batch, each image mixed with its neighbour in the batch rolled by one, by
   ``UniformMixup`` itself) at several weights, and the student's resolution.

The measures of 1 and 2 are mmfunmatch's (``mmfunmatch.evaluation.
calibration``); this driver collects the logits from a config (a plain
mmpretrain classifier, or a ``FunMatchDistiller`` whose first teacher is
reported), runs the queries of 3 and writes a markdown file, PNG figures and
a JSON of every number. Run it with ``python tools/teacher_report.py``.
"""
import argparse
import copy
import json
import os
import os.path as osp
from typing import (Callable, Dict, Iterable, List, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import DictAction

from mmfunmatch.evaluation.calibration import (N_BINS, calibration,
                                               label_smoothing_fingerprint,
                                               recommend_tau)
from mmfunmatch.models.batch_augments import UniformMixup
from mmfunmatch.utils import output_logits

DEFAULT_LAMS = (1.0, 0.9, 0.75, 0.5)

Size = Tuple[int, int]


# -- the inputs function matching queries -------------------------------------
class _GivenWeightMixup(UniformMixup):
    """``UniformMixup`` with the weight given instead of drawn."""

    def __init__(self, lam: float) -> None:
        super().__init__(fold=False, seed=0)
        self.lam = lam

    def sample_lam(self, batch_size: int) -> torch.Tensor:
        return torch.tensor([self.lam], dtype=torch.float64)


def mix_rolled(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Mix each sample with its neighbour, the batch rolled by one, with
    weight ``lam`` on the sample: ``UniformMixup``'s mixing (``lam * x +
    (1 - lam) * x.roll(1, 0)``) at a given weight instead of a drawn one,
    so the teacher is queried on exactly what training feeds it."""
    if lam == 1.0:
        return x
    if x.size(0) == 1:
        # UniformMixup refuses a batch of one (in training it is an error);
        # a last val batch of one image is mixed with itself, its rolled
        # neighbour.
        return mix_rolled(torch.cat([x, x]), lam)[:1]
    mixed, _ = _GivenWeightMixup(lam)(x)
    return mixed


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
        '`mmfunmatch.evaluation.calibration.label_smoothing_fingerprint`.'
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
        return output_logits(teacher(x, mode='tensor'))

    logits, labels, rows = collect(batches(), forward, lams, max_images)
    report = analyse(logits, labels, rows, n_bins)
    report['name'] = name
    report['meta'] = {'config': config if isinstance(config, str) else name,
                      'checkpoint': ckpt}
    if out_dir is not None:
        report['paths'] = write_report(report, out_dir, prefix)
    return report


# -- the command line (tools/teacher_report.py) -------------------------------
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Calibration, label-smoothing fingerprint and mixed-input '
        'behaviour of a teacher, with the recommended distillation tau.')
    parser.add_argument('config', help='classifier or FunMatchDistiller '
                        'config')
    parser.add_argument('--checkpoint', help='teacher weights (default: the '
                        'distiller config\'s teachers[0].checkpoint)')
    parser.add_argument('--out', default='work_dirs/teacher_report',
                        help='output folder (default work_dirs/'
                        'teacher_report)')
    parser.add_argument('--prefix', default='teacher_report',
                        help='output file name prefix')
    parser.add_argument('--lams', type=float, nargs='+',
                        default=list(DEFAULT_LAMS),
                        help='mixing weights to query (default 1 0.9 0.75 '
                        '0.5)')
    parser.add_argument('--student-size', type=int, nargs='+',
                        help='student input size (H [W]) for a plain config')
    parser.add_argument('--max-images', type=int,
                        help='use at most this many val images')
    parser.add_argument('--batch-size', type=int)
    parser.add_argument('--device', help='default: cuda when available')
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    size = args.student_size
    if size is not None:
        size = (size[0], size[-1])
    report = teacher_report(
        args.config, args.checkpoint, args.out, lams=args.lams,
        student_size=size, max_images=args.max_images,
        batch_size=args.batch_size, device=args.device,
        cfg_options=args.cfg_options, num_workers=args.num_workers,
        prefix=args.prefix)
    print(report['verdict'])
    print(f'report: {report["paths"]["markdown"]}')
