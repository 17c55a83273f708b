"""The other distillers on the digits demo: SRD's feature term beside the KL
term, and BYOT self-distillation, at the demo's budget, over seeds.

    python tools/distillers_study.py [--seeds 0 1 2] [--runs ...] [--jobs 2]
        [--teachers-from work_dirs/demo_seeds]
        [--work-dir work_dirs/distillers]

Runs (each through tools/train.py, as a user would run the config):

- ``kl``: the demo's FunMatch student (KL alone),
  demo/digits_funmatch_student.py;
- ``kl_srd``: the same plus SRD's feature term,
  srd/digits_funmatch_srd_student.py;
- ``label``: the demo's label-only student (the network from labels alone),
  demo/digits_label_student.py;
- ``byot``: BYOT on that network, byot/byot_resnet18_w8_digits.py (the deepest
  head's and each auxiliary head's accuracy);
- ``byot_labels_only``: the same network and auxiliary heads, every head from
  the labels alone, byot/byot_resnet18_w8_digits_labels_only.py.

The teachers are the demo's (``--teachers-from DIR``: DIR/seed<S>/teacher/
epoch_20.pth, written by ``python tools/demo.py --seeds ...``); a seed whose
teacher is missing trains one with the demo's teacher config first. Finished
runs are kept, so an interrupted study continues. Writes WORK_DIR/runs.csv,
distillers.md (mean +- std over seeds, per-seed values, margins) and
distillers.png; --md/--png copy them elsewhere (docs/).
"""
import argparse
import os
import os.path as osp
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

import numpy as np

from projects.funmatch_paper.ablation import schedule_options, write_csv
from projects.funmatch_paper.demo import (_finished, mean_std, train,
                                          val_history)
from projects.funmatch_paper.digits import write_digits

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs', 'funmatch')
TEACHER_CONFIG = osp.join(CONFIGS, 'demo', 'digits_teacher.py')
TEACHER_EPOCHS = 20
EPOCHS = 250
RUNS = {
    'kl': ('demo/digits_funmatch_student.py', True),
    'kl_srd': ('srd/digits_funmatch_srd_student.py', True),
    'label': ('demo/digits_label_student.py', True),
    'byot': ('byot/byot_resnet18_w8_digits.py', False),
    'byot_labels_only': ('byot/byot_resnet18_w8_digits_labels_only.py',
                         False),
}
LABELS = dict(
    kl='FunMatch student, KL alone',
    kl_srd='FunMatch student, KL + SRD feature term',
    label='the network from labels alone (final head)',
    byot='BYOT (labels + KL + L2 to the deepest head)',
    byot_labels_only='the same heads, each from labels alone')
HEADS = ('aux/head1_top1', 'aux/head2_top1', 'aux/head3_top1')
CSV_FIELDS = ('seed', 'run', 'val_top1', 'agreement', 'teacher_kl', 'head1',
              'head2', 'head3', 'epochs', 'wall_s')


def teacher_of(seed: int, work_root: str, teachers_from: Optional[str],
               data_root: str) -> str:
    """The demo teacher of ``seed``: reused from ``teachers_from`` when it
    finished there, else trained in ``work_root/seed<S>/teacher``."""
    if teachers_from:
        work = osp.join(teachers_from, f'seed{seed}', 'teacher')
        if _finished(work, TEACHER_EPOCHS):
            return osp.join(work, f'epoch_{TEACHER_EPOCHS}.pth')
    work = osp.join(work_root, f'seed{seed}', 'teacher')
    if not _finished(work, TEACHER_EPOCHS):
        train('teacher', TEACHER_CONFIG, work, _data_options(data_root) +
              [f'randomness.seed={seed}'], TEACHER_EPOCHS)
    return osp.join(work, f'epoch_{TEACHER_EPOCHS}.pth')


def _data_options(data_root: str) -> List[str]:
    return [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')]


def run_one(name: str, seed: int, work_root: str, data_root: str,
            teacher: str, epochs: int) -> dict:
    """One run (kept when it finished before); its CSV row."""
    config, needs_teacher = RUNS[name]
    work = osp.join(work_root, f'seed{seed}', name)
    opts = _data_options(data_root) + [f'randomness.seed={seed}']
    if needs_teacher:
        opts.append(f'model.teachers.0.checkpoint={teacher}')
    if epochs != EPOCHS:
        opts += schedule_options(epochs)
    wall = float('nan')
    if not _finished(work, epochs):
        os.makedirs(osp.dirname(work), exist_ok=True)
        start = time.time()
        train(name, osp.join(CONFIGS, config), work, opts, epochs)
        wall = time.time() - start
    final = val_history(work)[-1]
    row = dict(seed=seed, run=name, epochs=epochs, wall_s=round(wall, 1),
               val_top1=float(final['accuracy/top1']),
               agreement=float(final.get('teacher/agreement', float('nan'))),
               teacher_kl=float(final.get('teacher/kl', float('nan'))))
    for i, key in enumerate(HEADS, start=1):
        row[f'head{i}'] = float(final.get(key, float('nan')))
    return row


def _values(rows: Sequence[dict], run: str, key: str) -> List[float]:
    return [float(r[key]) for r in sorted(rows, key=lambda r: int(r['seed']))
            if r['run'] == run and not np.isnan(float(r[key]))]


def _margin(rows: Sequence[dict], a: str, b: str, key_a: str,
            key_b: str) -> List[float]:
    """Per seed, ``a[key_a] - b[key_b]`` (seeds holding both)."""
    by = {(int(r['seed']), r['run']): r for r in rows}
    seeds = sorted({s for s, _ in by})
    return [float(by[s, a][key_a]) - float(by[s, b][key_b]) for s in seeds
            if (s, a) in by and (s, b) in by]


def tables(rows: Sequence[dict]) -> str:
    """Markdown: both comparisons, mean +- std with per-seed values."""
    seeds = sorted({int(r['seed']) for r in rows})
    per = f'per seed ({", ".join(map(str, seeds))})'

    def cell(values):
        return (f'{mean_std(values)} | '
                f'{", ".join(f"{v:.1f}" for v in values) or "-"}')

    out = ['**SRD beside KL** (val top-1 and top-1 agreement with the '
           'teacher, %; val KL(teacher || student) at T = 1):', '',
           f'| student | val top-1 | {per} | agreement | {per} | val KL |',
           '| --- | --- | --- | --- | --- | --- |']
    for run in ('kl', 'kl_srd'):
        if _values(rows, run, 'val_top1'):
            kl = _values(rows, run, 'teacher_kl')
            kl_text = (f'{np.mean(kl):.3f} +- {np.std(kl, ddof=1):.3f}'
                       if len(kl) > 1 else ', '.join(f'{v:.3f}' for v in kl))
            out.append(f'| {LABELS[run]} | '
                       f'{cell(_values(rows, run, "val_top1"))} | '
                       f'{cell(_values(rows, run, "agreement"))} | '
                       f'{kl_text} |')
    m = _margin(rows, 'kl_srd', 'kl', 'val_top1', 'val_top1')
    if m:
        out.append(f'| KL + SRD minus KL (points) | {cell(m)} | | | |')
    out += ['', '**BYOT** (val top-1 of each head, %; head 1 follows stage '
            '1, the final head is the network\'s own):', '',
            '| training | head 1 | head 2 | head 3 | final head | '
            f'final, {per} |', '| --- | --- | --- | --- | --- | --- |']
    for run in ('label', 'byot_labels_only', 'byot'):
        if not _values(rows, run, 'val_top1'):
            continue
        heads = [mean_std(_values(rows, run, f'head{i}')) for i in (1, 2, 3)]
        out.append(f'| {LABELS[run]} | {" | ".join(heads)} | '
                   f'{cell(_values(rows, run, "val_top1"))} |')
    for a, b, text in (('byot', 'label', 'BYOT minus labels alone'),
                       ('byot', 'byot_labels_only',
                        'BYOT minus the heads from labels alone')):
        final = _margin(rows, a, b, 'val_top1', 'val_top1')
        if not final:
            continue
        heads = [mean_std(_margin(rows, a, b, f'head{i}', f'head{i}'))
                 for i in (1, 2, 3)]
        out.append(f'| {text} (points) | {" | ".join(heads)} | '
                   f'{cell(final)} |')
    return '\n'.join(out)


def plot(rows: Sequence[dict], path: str) -> None:
    """Left: KL vs KL + SRD; right: each head of BYOT, of the same heads
    from labels alone, and the network from labels alone. Bars are means,
    dots the seeds, lines the std."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4),
                             gridspec_kw=dict(width_ratios=[1, 2.2]))

    def bar(ax, x, values, color, label=None):
        if not values:
            return
        ax.bar(x, np.mean(values), 0.25, color=color, alpha=0.6, label=label,
               yerr=np.std(values, ddof=1) if len(values) > 1 else None,
               capsize=3)
        ax.plot([x] * len(values), values, 'k.', ms=4)

    for i, run in enumerate(('kl', 'kl_srd')):
        bar(axes[0], i, _values(rows, run, 'val_top1'), f'C{i}')
    axes[0].set_xticks([0, 1], ['KL', 'KL + SRD'])
    axes[0].set(ylabel='val top-1 (%)', title='FunMatch student (digits)')
    keys = ('head1', 'head2', 'head3', 'val_top1')
    for j, run in enumerate(('label', 'byot_labels_only', 'byot')):
        for k, key in enumerate(keys):
            bar(axes[1], k + (j - 1) * 0.27, _values(rows, run, key),
                f'C{j + 2}', LABELS[run] if k == 3 else None)
    axes[1].set_xticks(range(4), ['head 1', 'head 2', 'head 3', 'final'])
    axes[1].set(ylabel='val top-1 (%)', title='BYOT (ResNet-18 w8, digits)')
    axes[1].legend(fontsize=8, loc='lower right')
    for ax in axes:
        lo = min([float(r[k]) for r in rows for k in keys
                  if not np.isnan(float(r[k]))] or [0])
        ax.set_ylim(max(0, lo - 5), 100)
        ax.grid(alpha=0.3, axis='y')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--runs', nargs='+', default=list(RUNS),
                        choices=list(RUNS))
    parser.add_argument('--epochs', type=int, default=EPOCHS,
                        help='student schedule length (the demo: 250)')
    parser.add_argument('--jobs', type=int, default=1,
                        help='trainings run side by side')
    parser.add_argument('--work-dir', default='work_dirs/distillers')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--teachers-from', default='work_dirs/demo_seeds',
                        help='reuse DIR/seed<S>/teacher/epoch_20.pth')
    parser.add_argument('--md', help='also write the tables here')
    parser.add_argument('--png', help='also write the figure here')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    work_root = osp.abspath(args.work_dir)
    data_root = osp.abspath(args.data_root)
    write_digits(data_root)
    teachers: Dict[int, str] = {
        s: teacher_of(s, work_root, args.teachers_from and osp.abspath(
            args.teachers_from), data_root) for s in args.seeds}
    # Run by run (in --runs order), all seeds of one before the next.
    jobs = [(name, seed) for name in args.runs for seed in args.seeds]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(
            lambda job: run_one(job[0], job[1], work_root, data_root,
                                teachers[job[1]], args.epochs), jobs))
    os.makedirs(work_root, exist_ok=True)
    write_csv(rows, osp.join(work_root, 'runs.csv'), CSV_FIELDS)
    text = tables(rows)
    md = osp.join(work_root, 'distillers.md')
    with open(md, 'w') as f:
        f.write(text + '\n')
    png = osp.join(work_root, 'distillers.png')
    plot(rows, png)
    for src, dst in ((md, args.md), (png, args.png)):
        if dst:
            shutil.copyfile(src, dst)
    print(text)
    return 0
