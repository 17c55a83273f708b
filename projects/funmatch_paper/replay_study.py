"""The replay store on the digits demo: students trained from stores against
the online student, over seeds.

    python tools/replay_study.py [--seeds 0 1 2] [--epochs 100]
        [--cycle-epochs 20] [--topk 3] [--temperatures 1 2 4]

For each seed, with the demo's teacher of that seed (``tools/demo.py
--seeds``, trained again when missing): one fp32 store and one top-k store
of ``--epochs`` epochs and one of ``--cycle-epochs`` epochs
(tools/label_teacher.py); the online FunMatch student and students from each
store (fp32, top-k, the short store cycled to ``--epochs``). For the first
seed also the temperature sweep: the online student and the fp32 replay at
each further temperature. Writes ``runs.csv``, ``summary.md`` and
``replay_curves.png`` into the work folder; reruns skip finished runs.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from projects.funmatch_paper.ablation import schedule_options, write_csv
from projects.funmatch_paper.demo import (DEMO_CONFIGS, REPO, _finished,
                                          mean_std, train, val_history)

REPLAY_CONFIG = osp.join(REPO, 'configs', 'funmatch', 'replay',
                         'digits_replay_student.py')
ONLINE_CONFIG = osp.join(DEMO_CONFIGS, 'digits_funmatch_student.py')
FIELDS = ('seed', 'run', 'tau', 'val_top1', 'agreement', 'kl', 'epochs',
          'wall_s')


def options(data_root: str, seed: int, epochs: int, teacher: str,
            tau: float = 1.0) -> List[str]:
    return [f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'randomness.seed={seed}', f'model.teachers.0.checkpoint={teacher}',
            f'model.distill_loss.tau={tau}', *schedule_options(epochs),
            f'train_cfg.val_interval={max(1, epochs // 10)}']


def label(store: str, opts: List[str], epochs: int, precision: str = 'fp32',
          topk: Optional[int] = None) -> float:
    """tools/label_teacher.py; the wall time in s (nan if already done)."""
    if osp.isfile(osp.join(store, 'val_rank_000.safetensors')):
        return float('nan')
    cmd = [sys.executable, osp.join(REPO, 'tools', 'label_teacher.py'),
           ONLINE_CONFIG, store, '--epochs', str(epochs), '--precision',
           precision]
    if topk:
        cmd += ['--topk', str(topk)]
    cmd += ['--cfg-options', *opts]
    print(f'[replay] label {store}', flush=True)
    start = time.time()
    with open(store + '.log', 'w') as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    return time.time() - start


def student(name: str, config: str, work: str, opts: List[str],
            epochs: int) -> float:
    if _finished(work, epochs):
        return float('nan')
    return train(name, config, work, opts, epochs)


def teacher_of(root: str, seed: int) -> str:
    path = osp.join(REPO, 'work_dirs', 'demo_seeds', f'seed{seed}',
                    'teacher', 'epoch_20.pth')
    if not osp.isfile(path):
        raise SystemExit(f'{path} is missing: python tools/demo.py --seeds '
                         f'{seed} trains it.')
    return path


def run_seed(root: str, data_root: str, seed: int, epochs: int,
             cycle_epochs: int, topk: int,
             temperatures: Sequence[float] = (),
             main_runs: bool = True) -> List[dict]:
    work = osp.join(root, f'seed{seed}')
    os.makedirs(work, exist_ok=True)
    teacher = teacher_of(root, seed)
    rows = []

    def record(run, wall, tau=1.0, path=None):
        final = val_history(path or osp.join(work, run))[-1]
        rows.append(dict(
            seed=seed, run=run, tau=tau,
            val_top1=float(final['accuracy/top1']),
            agreement=float(final.get('teacher/agreement', 'nan')),
            kl=float(final.get('teacher/kl', 'nan')), epochs=epochs,
            wall_s=round(wall, 1)))

    base = options(data_root, seed, epochs, teacher)
    stores = dict(fp32=osp.join(work, 'store_fp32'),
                  top=osp.join(work, f'store_top{topk}'),
                  short=osp.join(work, f'store_{cycle_epochs}ep'))
    walls = dict(label_fp32=label(stores['fp32'], base, epochs),
                 label_top=label(stores['top'], base, epochs, 'topk', topk),
                 label_short=label(stores['short'], base, cycle_epochs))
    for key, wall in walls.items():
        rows.append(dict(seed=seed, run=key, tau='', val_top1='',
                         agreement='', kl='', epochs=(
                             cycle_epochs if key == 'label_short' else
                             epochs), wall_s=round(wall, 1)))
    runs = [('online', ONLINE_CONFIG, base),
            (f'replay_top{topk}', REPLAY_CONFIG,
             base + [f'model.store={stores["top"]}']),
            (f'replay_cycle{cycle_epochs}', REPLAY_CONFIG,
             base + [f'model.store={stores["short"]}', 'model.cycle=True'])]
    if main_runs and (seed == 0 or temperatures):
        # Bitwise the online run (tests/tools/test_label_teacher.py): one
        # seed shows it at full length and gives the replay's time.
        runs.insert(1, ('replay_fp32', REPLAY_CONFIG,
                        base + [f'model.store={stores["fp32"]}']))
    if not main_runs:
        runs = [('online', ONLINE_CONFIG, base),
                ('replay_fp32', REPLAY_CONFIG,
                 base + [f'model.store={stores["fp32"]}'])]
        for tau in temperatures[1:]:
            opts = options(data_root, seed, epochs, teacher, tau)
            runs += [(f'online_T{tau:g}', ONLINE_CONFIG, opts),
                     (f'replay_fp32_T{tau:g}', REPLAY_CONFIG,
                      opts + [f'model.store={stores["fp32"]}'])]
    for name, config, opts in runs:
        wall = student(f'{name}_s{seed}', config, osp.join(work, name), opts,
                       epochs)
        tau = float(name.split('_T')[1]) if '_T' in name else 1.0
        record(name, wall, tau)
    return rows


def table(rows: Sequence[dict]) -> str:
    runs: Dict[str, Dict[str, list]] = {}
    for r in rows:
        if r['val_top1'] == '':
            continue
        d = runs.setdefault(r['run'], dict(top1=[], agree=[], kl=[],
                                           wall=[]))
        d['top1'].append(float(r['val_top1']))
        d['agree'].append(float(r['agreement']))
        d['kl'].append(float(r['kl']))
        d['wall'].append(float(r['wall_s']))
    lines = ['| run | seeds | val top-1 (%) | agreement (%) | val KL | '
             'wall (s) |', '| --- | --- | --- | --- | --- | --- |']
    for name, d in runs.items():
        kl = (f'{sum(d["kl"]) / len(d["kl"]):.4f}' if d['kl'] else '-')
        lines.append(f'| {name} | {len(d["top1"])} | {mean_std(d["top1"])} '
                     f'| {mean_std(d["agree"])} | {kl} | '
                     f'{mean_std(d["wall"])} |')
    return '\n'.join(lines)


def plot(root: str, seed: int, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    work = osp.join(root, f'seed{seed}')
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in sorted(os.listdir(work)):
        if not osp.isdir(osp.join(work, name)) or name.startswith('store'):
            continue
        try:
            hist = val_history(osp.join(work, name))
        except FileNotFoundError:
            continue
        ax.plot([h['step'] for h in hist],
                [h['accuracy/top1'] for h in hist], marker='.', label=name)
    ax.set_xlabel('epoch')
    ax.set_ylabel('val top-1 (%)')
    ax.set_title(f'digits, seed {seed}: online vs replay stores')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=100)
    parser.add_argument('--cycle-epochs', type=int, default=20)
    parser.add_argument('--topk', type=int, default=3)
    parser.add_argument('--temperatures', type=float, nargs='+',
                        default=[1.0, 2.0, 4.0])
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--work-dir', default='work_dirs/replay_study')
    args = parser.parse_args(argv)
    root = osp.abspath(args.work_dir)
    data_root = osp.abspath(args.data_root)
    rows: List[dict] = []
    for seed in args.seeds:
        rows += run_seed(root, data_root, seed, args.epochs,
                         args.cycle_epochs, args.topk)
        write_csv(rows, osp.join(root, 'runs.csv'), FIELDS)
    # The temperature sweep (first seed): after every seed's main runs.
    sweep = run_seed(root, data_root, args.seeds[0], args.epochs,
                     args.cycle_epochs, args.topk, args.temperatures,
                     main_runs=False)
    rows += [r for r in sweep if '_T' in r['run']]
    write_csv(rows, osp.join(root, 'runs.csv'), FIELDS)
    with open(osp.join(root, 'summary.md'), 'w') as f:
        f.write(table(rows) + '\n')
    plot(root, args.seeds[0], osp.join(root, 'replay_curves.png'))
    print(table(rows))
