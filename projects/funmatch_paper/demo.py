"""The digits demo: teacher from labels, a FunMatch student and a label-only
student of the same architecture and budget, through tools/train.py.

Run it with ``python tools/demo.py`` (or ``make demo``): one seed, the
table, the curves. ``python tools/demo.py --seeds 0 1 2`` runs the three
trainings for each seed (teacher included) and writes mean +- std; its
table is what the one-seed demo compares itself with.
"""
import argparse
import csv
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, TextIO

import numpy as np

from projects.funmatch_paper.ablation import (is_complete, read_records,
                                              schedule_options, write_csv)
from projects.funmatch_paper.digits import write_digits

# The checkout: the folder above projects/.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = osp.join(REPO, 'configs', 'funmatch', 'demo')
# The committed 3-seed reference (``--seeds 0 1 2``) the one-seed demo is
# compared with.
REFERENCE_CSV_NAME = 'docs/demo_seeds.csv'
REFERENCE_CSV = osp.join(REPO, REFERENCE_CSV_NAME)
RUNS = (
    ('teacher', 'digits_teacher.py'),
    ('funmatch', 'digits_funmatch_student.py'),
    ('label', 'digits_label_student.py'),
)
LABELS = dict(
    teacher='teacher (ResNet-18 w16, all 1,297 labelled train images)',
    label='label-only student (ResNet-18 w8, 200 labelled images)',
    funmatch='FunMatch student (ResNet-18 w8, the same 200 images, no labels)')
CSV_FIELDS = ('seed', 'run', 'val_top1', 'agreement', 'epochs', 'wall_s')

_VAL = re.compile(r'Epoch\(val\) \[(\d+)\]')
_TOP1 = re.compile(r'accuracy/top1: ([\d.]+)')
_AGREE = re.compile(r'teacher/agreement: ([\d.]+)')
_ETA = re.compile(r'eta: (\S+)')


def val_history(work_dir: str) -> List[Dict]:
    """Validation records of a run (one per evaluation, 'step' = epoch)."""
    _, val = read_records(work_dir)
    if not val:
        raise FileNotFoundError(f'no validation records under {work_dir}')
    return val


def progress_line(line: str, name: str, max_epochs: int,
                  state: dict) -> Optional[str]:
    """A one-line progress report for an mmengine log line, or None.

    Training lines only update ``state['eta']``; each validation line gives
    ``[demo] NAME epoch E/MAX: val top-1 A, agreement G (eta ...)``.
    """
    eta = _ETA.search(line)
    if eta and 'Epoch(train)' in line:
        state['eta'] = eta.group(1)
    val = _VAL.search(line)
    top1 = _TOP1.search(line)
    if not (val and top1):
        return None
    agree = _AGREE.search(line)
    text = (f'[demo] {name:<8} epoch {int(val.group(1)):>3}/{max_epochs}: '
            f'val top-1 {float(top1.group(1)):.1f}')
    if agree:
        text += f', agreement {float(agree.group(1)):.1f}'
    if state.get('eta') and int(val.group(1)) < max_epochs:
        text += f' (run eta {state["eta"]})'
    return text


def follow(lines: Iterable[str], log: TextIO, name: str, max_epochs: int,
           out: TextIO = sys.stdout) -> None:
    """Copy a training's output into its log file, printing progress."""
    state: dict = {}
    for line in lines:
        log.write(line)
        report = progress_line(line, name, max_epochs, state)
        if report:
            print(report, file=out, flush=True)


def train(name: str, config: str, work_dir: str, options: List[str],
          max_epochs: int) -> float:
    """Run tools/train.py as a user would; return the wall time in s."""
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
           '--work-dir', work_dir]
    if options:
        cmd += ['--cfg-options'] + options
    log_path = osp.join(osp.dirname(work_dir), f'{name}.log')
    print(f'[demo] {name}: {" ".join(cmd)}\n[demo] {name}: full log in '
          f'{log_path}', flush=True)
    # One intra-op thread unless the caller chose: the order of torch's float
    # reductions, and so each run's trajectory, then does not depend on the
    # machine's core count (docs/demo_seeds.csv was measured so).
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    start = time.time()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        follow(proc.stdout, log, name, max_epochs)
        returncode = proc.wait()
    if returncode != 0:
        raise RuntimeError(f'{name} training failed; see {log_path}')
    return time.time() - start


def _config_epochs(config: str) -> int:
    from mmengine.config import Config
    return int(Config.fromfile(config).train_cfg.max_epochs)


def _finished(work_dir: str, epochs: int) -> bool:
    """A complete final checkpoint and a validation at the last epoch."""
    if not is_complete(osp.join(work_dir, f'epoch_{epochs}.pth')):
        return False
    _, val = read_records(work_dir)
    return any(r['step'] == epochs for r in val)


def run_seed(work_root: str, data_root: str, seed: int = 0,
             epochs: Optional[int] = None,
             teacher_epochs: Optional[int] = None,
             reuse: bool = False) -> Dict[str, dict]:
    """The three trainings of one seed; returns, per run, its final val
    record, its history and its wall time.

    ``epochs`` / ``teacher_epochs`` shorten the schedules (tests); ``reuse``
    keeps a run that already finished in ``work_root`` (multi-seed studies).
    """
    os.makedirs(work_root, exist_ok=True)
    results: Dict[str, dict] = {}
    teacher_ckpt = None
    for name, cfg_name in RUNS:
        config = osp.join(DEMO_CONFIGS, cfg_name)
        work_dir = osp.join(work_root, name)
        opts = [f'train_dataloader.dataset.data_root={data_root}',
                f'val_dataloader.dataset.data_root={data_root}',
                f'test_dataloader.dataset.data_root={data_root}',
                f'randomness.seed={seed}']
        n = teacher_epochs if name == 'teacher' else epochs
        if n is not None:
            opts += schedule_options(n)
        else:
            n = _config_epochs(config)
        if teacher_ckpt is not None:
            opts.append(f'model.teachers.0.checkpoint={teacher_ckpt}')
        if reuse and _finished(work_dir, n):
            print(f'[demo] {name}: seed {seed} already trained in {work_dir}',
                  flush=True)
            wall = float('nan')
        else:
            wall = train(name, config, work_dir, opts, n)
        history = val_history(work_dir)
        results[name] = dict(final=history[-1], history=history, wall=wall,
                             epochs=n)
        if name == 'teacher':
            teacher_ckpt = osp.join(work_dir, f'epoch_{n}.pth')
    return results


def rows_of(seed: int, results: Dict[str, dict]) -> List[dict]:
    """One CSV row per run of a seed."""
    return [dict(seed=seed, run=name,
                 val_top1=float(r['final']['accuracy/top1']),
                 agreement=float(r['final'].get('teacher/agreement',
                                                float('nan'))),
                 epochs=r['epochs'], wall_s=round(r['wall'], 1))
            for name, r in results.items()]


def summary(rows: Sequence[dict]) -> Dict[str, Dict[str, List[float]]]:
    """Per run (and for the margin FunMatch minus label-only, per seed):
    the values of val top-1 and agreement over seeds."""
    out: Dict[str, Dict[str, List[float]]] = {}
    by_seed: Dict[int, Dict[str, float]] = {}
    for r in rows:
        d = out.setdefault(r['run'], dict(val_top1=[], agreement=[]))
        d['val_top1'].append(float(r['val_top1']))
        d['agreement'].append(float(r['agreement']))
        by_seed.setdefault(int(r['seed']), {})[r['run']] = float(
            r['val_top1'])
    margins = [s['funmatch'] - s['label'] for s in by_seed.values()
               if 'funmatch' in s and 'label' in s]
    if margins:
        out['margin'] = dict(val_top1=margins, agreement=[])
    return out


def mean_std(values: Sequence[float]) -> str:
    """``mean +- std`` (sample std over seeds) with one decimal; the std of
    one value is not defined and is left out."""
    values = [v for v in values if not np.isnan(v)]
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{np.mean(values):.1f} +- {np.std(values, ddof=1):.1f}'


def seeds_table(rows: Sequence[dict]) -> str:
    """Markdown: mean +- std over seeds, with the per-seed values."""
    stats = summary(rows)
    seeds = sorted({int(r['seed']) for r in rows})
    lines = [f'| model | val top-1 (%), {len(seeds)} seeds | per seed '
             f'({", ".join(map(str, seeds))}) | top-1 agreement with '
             f'teacher (%) |', '| --- | --- | --- | --- |']
    for name in ('teacher', 'label', 'funmatch', 'margin'):
        if name not in stats:
            continue
        s = stats[name]
        label = LABELS.get(name, 'FunMatch minus label-only (points)')
        per_seed = ', '.join(f'{v:.1f}' for v in s['val_top1'])
        lines.append(f'| {label} | {mean_std(s["val_top1"])} | {per_seed} | '
                     f'{mean_std(s["agreement"])} |')
    return '\n'.join(lines)


def read_csv(path: str) -> List[dict]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def compare_with_reference(rows: Sequence[dict],
                           reference: Sequence[dict]) -> str:
    """Sentences placing one seed's numbers in the reference's spread."""
    ref, mine = summary(reference), summary(rows)
    n = len({r['seed'] for r in reference})
    lines = [f'Compared with the {n}-seed reference ({REFERENCE_CSV_NAME}, '
             f'mean +- std, range):']
    for name in ('label', 'funmatch', 'margin'):
        if name not in ref or name not in mine:
            continue
        values = ref[name]['val_top1']
        got = mine[name]['val_top1'][0]
        lo, hi = min(values), max(values)
        where = ('inside' if lo <= got <= hi else
                 'below' if got < lo else 'above')
        what = ('FunMatch minus label-only' if name == 'margin' else
                f'{name} student val top-1')
        lines.append(f'- {what}: {got:.1f} here; reference '
                     f'{mean_std(values)} (range {lo:.1f} to {hi:.1f}): '
                     f'{where} its range.')
    lines.append('One seed on 500 val images moves by about a point between '
                 'seeds, and float kernels differ between CPUs, so the same '
                 'seed can end a little differently on another machine.')
    return '\n'.join(lines)



def plot(histories: Dict[str, List[Dict]], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = dict(funmatch='FunMatch student', label='label-only student')
    for name in ('funmatch', 'label'):
        hist = histories[name]
        epochs = [r['step'] for r in hist]
        axes[0].plot(epochs, [r['accuracy/top1'] for r in hist], 'o-',
                     label=labels[name])
        axes[1].plot(epochs, [r['teacher/agreement'] for r in hist], 'o-',
                     label=labels[name])
    teacher_acc = histories['teacher'][-1]['accuracy/top1']
    axes[0].axhline(teacher_acc, color='k', ls='--', label='teacher')
    axes[0].set(xlabel='epoch', ylabel='val top-1 (%)',
                title='digits val accuracy')
    axes[1].set(xlabel='epoch', ylabel='top-1 agreement with teacher (%)',
                title='student-teacher agreement')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(work_root: str = 'work_dirs/demo',
             data_root: str = 'data/digits',
             epochs: Optional[int] = None,
             teacher_epochs: Optional[int] = None,
             seed: int = 0,
             reference_csv: Optional[str] = REFERENCE_CSV) -> str:
    """Run the three trainings of one seed and return the markdown result
    table, compared with the committed multi-seed reference when it is
    there and the schedules are the configs' own."""
    work_root, data_root = osp.abspath(work_root), osp.abspath(data_root)
    counts = write_digits(data_root)
    print(f'[demo] digits in {data_root}: {counts}', flush=True)
    results = run_seed(work_root, data_root, seed, epochs, teacher_epochs)
    plot({k: r['history'] for k, r in results.items()},
         osp.join(work_root, 'demo_curves.png'))
    rows = rows_of(seed, results)
    write_csv(rows, osp.join(work_root, 'results.csv'), CSV_FIELDS)

    lines = [f'Seed {seed}, one run each:', '',
             '| model | val top-1 (%) | top-1 agreement with teacher (%) '
             '| wall time (s) |', '| --- | --- | --- | --- |']
    for name in ('teacher', 'label', 'funmatch'):
        r = results[name]
        agree = ('-' if name == 'teacher' else
                 f'{r["final"]["teacher/agreement"]:.1f}')
        lines.append(f'| {LABELS[name]} | {r["final"]["accuracy/top1"]:.1f} '
                     f'| {agree} | {r["wall"]:.0f} |')
    fm = results['funmatch']['final']['accuracy/top1']
    lb = results['label']['final']['accuracy/top1']
    lines += ['', f'FunMatch minus label-only: {fm - lb:+.1f} points.']
    if (reference_csv and osp.isfile(reference_csv) and epochs is None
            and teacher_epochs is None):
        lines += ['', compare_with_reference(rows, read_csv(reference_csv))]
    text = '\n'.join(lines)
    with open(osp.join(work_root, 'results.md'), 'w') as f:
        f.write(text + '\n')
    return text


def run_seeds(seeds: Sequence[int], work_root: str = 'work_dirs/demo_seeds',
              data_root: str = 'data/digits',
              epochs: Optional[int] = None,
              teacher_epochs: Optional[int] = None) -> str:
    """The demo for several seeds (``WORK/seed<S>/``, finished runs kept);
    writes ``runs.csv`` and ``summary.md`` and returns the table."""
    work_root, data_root = osp.abspath(work_root), osp.abspath(data_root)
    write_digits(data_root)
    rows: List[dict] = []
    for seed in seeds:
        print(f'[demo] seed {seed}', flush=True)
        results = run_seed(osp.join(work_root, f'seed{seed}'), data_root,
                           seed, epochs, teacher_epochs, reuse=True)
        rows += rows_of(seed, results)
        write_csv(rows, osp.join(work_root, 'runs.csv'), CSV_FIELDS)
    table = seeds_table(rows)
    with open(osp.join(work_root, 'summary.md'), 'w') as f:
        f.write(table + '\n')
    return table


# -- the command line (tools/demo.py) ----------------------------------------
def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='The digits demo: `python tools/demo.py [--seeds S ...] '
        '[--work-dir DIR]`.')
    parser.add_argument('--work-dir', help='default work_dirs/demo, or '
                        'work_dirs/demo_seeds with several seeds')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--epochs', type=int,
                        help='student epochs (default: the configs)')
    parser.add_argument('--teacher-epochs', type=int)
    args = parser.parse_args(argv)
    start = time.time()
    if len(args.seeds) == 1:
        work_dir = args.work_dir or 'work_dirs/demo'
        table = run_demo(work_dir, args.data_root, args.epochs,
                         args.teacher_epochs, seed=args.seeds[0])
        print('\n' + table)
        print(f'\ncurves: {work_dir}/demo_curves.png')
    else:
        work_dir = args.work_dir or 'work_dirs/demo_seeds'
        table = run_seeds(args.seeds, work_dir, args.data_root, args.epochs,
                          args.teacher_epochs)
        print('\n' + table)
        print(f'\nper run: {work_dir}/runs.csv')
    print(f'total wall time: {time.time() - start:.0f} s')
