"""The digits demo: teacher from labels, a FunMatch student and a label-only
student of the same architecture and budget, through tools/train.py.

Run it with ``python tools/demo.py`` (or ``make demo``).
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

from mmfunmatch.datasets.digits import write_digits

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = osp.join(REPO, 'configs', 'funmatch', 'demo')
RUNS = (
    ('teacher', 'digits_teacher.py'),
    ('funmatch', 'digits_funmatch_student.py'),
    ('label', 'digits_label_student.py'),
)


def val_history(work_dir: str) -> List[Dict]:
    """Validation records of the newest run in ``work_dir`` (one per
    evaluation, with 'step' = epoch), read from mmengine's scalars.json."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no scalars.json under {work_dir}')
    with open(runs[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if 'accuracy/top1' in r]


def train(name: str, config: str, work_dir: str, options: List[str]) -> float:
    """Run tools/train.py as a user would; return the wall time in s."""
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
           '--work-dir', work_dir]
    if options:
        cmd += ['--cfg-options'] + options
    print(f'[demo] {name}: {" ".join(cmd)}', flush=True)
    start = time.time()
    with open(osp.join(osp.dirname(work_dir), f'{name}.log'), 'w') as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f'{name} training failed; see {log.name}')
    return time.time() - start


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
             teacher_epochs: Optional[int] = None) -> str:
    """Run the three trainings and return the markdown result table.

    ``epochs`` / ``teacher_epochs`` shorten the schedules (tests)."""
    work_root = osp.abspath(work_root)
    data_root = osp.abspath(data_root)
    os.makedirs(work_root, exist_ok=True)
    counts = write_digits(data_root)
    print(f'[demo] digits in {data_root}: {counts}', flush=True)
    teacher_ckpt = None
    walls, histories = {}, {}
    for name, cfg_name in RUNS:
        work_dir = osp.join(work_root, name)
        opts = [f'train_dataloader.dataset.data_root={data_root}',
                f'val_dataloader.dataset.data_root={data_root}',
                f'test_dataloader.dataset.data_root={data_root}']
        n = teacher_epochs if name == 'teacher' else epochs
        if n is not None:
            warmup = max(1, n // 10)
            opts += [f'train_cfg.max_epochs={n}', f'train_cfg.val_interval={n}',
                     f'default_hooks.checkpoint.interval={n}',
                     f'param_scheduler.0.end={warmup}',
                     f'param_scheduler.1.begin={warmup}',
                     f'param_scheduler.1.end={n}']
        if teacher_ckpt is not None:
            opts.append(f'model.teachers.0.checkpoint={teacher_ckpt}')
        walls[name] = train(name, osp.join(DEMO_CONFIGS, cfg_name), work_dir,
                            opts)
        histories[name] = val_history(work_dir)
        if name == 'teacher':
            with open(osp.join(work_dir, 'last_checkpoint')) as f:
                teacher_ckpt = f.read().strip()
    plot(histories, osp.join(work_root, 'demo_curves.png'))

    fm, lb = histories['funmatch'][-1], histories['label'][-1]
    rows = [
        ('teacher (ResNet-18 w16, all 1,297 labelled train images)',
         histories['teacher'][-1]['accuracy/top1'], None, walls['teacher']),
        ('label-only student (ResNet-18 w8, 200 labelled images)',
         lb['accuracy/top1'], lb['teacher/agreement'], walls['label']),
        ('FunMatch student (ResNet-18 w8, the same 200 images, no labels)',
         fm['accuracy/top1'], fm['teacher/agreement'], walls['funmatch']),
    ]
    lines = ['| model | val top-1 (%) | top-1 agreement with teacher (%) '
             '| wall time (s) |', '| --- | --- | --- | --- |']
    for label, acc, agree, wall in rows:
        agree = '-' if agree is None else f'{agree:.1f}'
        lines.append(f'| {label} | {acc:.1f} | {agree} | {wall:.0f} |')
    table = '\n'.join(lines)
    verdict = ('The FunMatch student beats the label-only student.'
               if fm['accuracy/top1'] > lb['accuracy/top1'] else
               'The FunMatch student did NOT beat the label-only student '
               'at this budget.')
    with open(osp.join(work_root, 'results.md'), 'w') as f:
        f.write(table + '\n\n' + verdict + '\n')
    return table + '\n\n' + verdict
