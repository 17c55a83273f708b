"""A student step from a replay store against the online step, and the
labelling rate against the teacher's share of an online step.

    python tools/benchmark_replay.py [--size 64] [--batch-size 8]
        [--images 64] [--epochs 2] [--rounds 2]

The paper's pair (``configs/funmatch/r50_bit152x2_imagenet.py``: BiT-R152x2
teacher -> BiT-R50x1 student, consistent inception crops, mixup) at
``--size`` px on ``--images`` generated 500 x 375 JPEG photographs, with the
teacher's random weights saved to a file (timing needs no trained weights).
Three runs of ``tools/label_teacher.py`` / ``tools/train.py`` as a user
runs them: the labelling run, the online student, the student from the
store; the three alternate ``--rounds`` times so that a change in the
machine's load hits all three. Each step's time is mmengine's own per-iteration
``time`` (data wait included), the first ``--skip`` of every run left out.

The bound: the online step does the teacher's forward plus the student's
forward and backward (about 3 forwards); the store removes the teacher's
forward, so the speed-up is at most online FLOPs / (online - teacher FLOPs),
counted with torch's FlopCounterMode.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IMAGENET = osp.join(REPO, 'configs', 'funmatch', 'r50_bit152x2_imagenet.py')

CONFIG = '''_base_ = [{base!r}]
model = dict(teachers=dict(bit=dict(checkpoint={teacher!r}, size={size})))
train_dataloader = dict(
    batch_size={batch}, num_workers=2, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root={photos!r},
                 data_prefix='', with_label=False, pipeline=[
                     dict(type='LoadImageFromFile'),
                     dict(type='ConsistentView', mode='same/ic',
                          student_size={size}, teacher_sizes=[{size}]),
                     dict(type='PackFunMatchInputs')]))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs={epochs})
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1000, save_last=False,
                                     iter_interval=10**9))
# Each iteration's own time, not a moving average.
log_processor = dict(window_size=1)
log_level = 'WARNING'
'''
REPLAY = '''_base_ = [{online!r}]
model = dict(type='ReplayDistiller', store={store!r})
custom_hooks = [dict(type='ReplayStoreHook')]
'''


def step_times(work_dir: str, skip: int) -> Dict[str, List[float]]:
    """Per-iteration 'time' and 'data_time' from mmengine's scalars.json."""
    found = []
    for root, _, files in os.walk(work_dir):
        found += [osp.join(root, f) for f in files if f == 'scalars.json']
    if not found:
        raise FileNotFoundError(f'no scalars.json under {work_dir}')
    out: Dict[str, List[float]] = dict(time=[], data_time=[])
    with open(sorted(found)[-1]) as f:
        for line in f:
            rec = json.loads(line)
            if 'time' in rec and 'iter' in rec and rec['iter'] > skip:
                out['time'].append(rec['time'])
                out['data_time'].append(rec.get('data_time', 0.0))
    return out


def finished(work_dir: str, total_iters: int) -> bool:
    """Whether a run logged all its iterations."""
    try:
        return len(step_times(work_dir, 0)['time']) >= total_iters
    except FileNotFoundError:
        return False


def run_tool(args: List[str], log: str) -> float:
    env = dict(os.environ, PYTHONPATH=REPO)
    start = time.time()
    with open(log, 'w') as f:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env,
                              stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f'{args[0]} failed; see {log}')
    return time.time() - start


def flop_shares(cfg_path: str, size: int) -> Dict[str, float]:
    """GFLOPs per image: teacher forward, student forward, and the
    resulting bound on the store's speed-up."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import mmfunmatch  # noqa: F401
    from projects.funmatch_paper.benchmark import _plain_forward, count_flops
    cfg = Config.fromfile(cfg_path)
    x = torch.zeros(1, 3, size, size)
    teacher = MODELS.build(cfg.model.teachers.bit.model).eval()
    t = count_flops(_plain_forward(teacher), x) / 1e9
    del teacher
    student = MODELS.build(cfg.model.student).eval()
    s = count_flops(_plain_forward(student), x) / 1e9
    online = t + 3 * s  # backward ~ 2 forwards
    return dict(teacher_gflops=t, student_gflops=s,
                teacher_share=t / online, bound=online / (3 * s))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--skip', type=int, default=2,
                        help='first iterations of each run left out')
    parser.add_argument('--work-dir', default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    from mmpretrain.registry import MODELS
    from mmengine.config import Config

    import mmfunmatch  # noqa: F401
    from projects.funmatch_paper.benchmark import write_photos

    # Absolute: the replay config names its base and store by path.
    work = osp.abspath(args.work_dir or tempfile.mkdtemp(
        prefix='mmfunmatch_replay_'))
    os.makedirs(work, exist_ok=True)
    total = args.epochs * (args.images // args.batch_size)
    photos = osp.join(work, 'photos')
    write_photos(photos, args.images)
    teacher_path = osp.join(work, 'teacher.pth')
    if not osp.isfile(teacher_path):
        base = Config.fromfile(IMAGENET)
        torch.manual_seed(0)
        torch.save(MODELS.build(base.model.teachers.bit.model).state_dict(),
                   teacher_path)
    online_cfg = osp.join(work, 'online.py')
    with open(online_cfg, 'w') as f:
        f.write(CONFIG.format(base=IMAGENET, teacher=teacher_path,
                              size=args.size, batch=args.batch_size,
                              photos=photos, epochs=args.epochs))
    store = osp.join(work, 'store')
    replay_cfg = osp.join(work, 'replay.py')
    with open(replay_cfg, 'w') as f:
        f.write(REPLAY.format(online=online_cfg, store=store))

    flops = flop_shares(online_cfg, args.size)
    walls: Dict[str, float] = {}
    times = {k: dict(time=[], data_time=[])
             for k in ('label', 'online', 'replay')}
    for r in range(args.rounds):
        # The first round's store serves the replays; a later round's
        # labelling writes its own store (timed the same way).
        tools = (
            ('label', [osp.join(REPO, 'tools', 'label_teacher.py'),
                       online_cfg, store if r == 0 else f'{store}{r}']),
            ('online', [osp.join(REPO, 'tools', 'train.py'), online_cfg]),
            ('replay', [osp.join(REPO, 'tools', 'train.py'), replay_cfg]))
        for name, cmd in tools:
            run_dir = osp.join(work, f'{name}{r}')
            if not finished(run_dir, total):  # a rerun keeps finished runs
                walls[f'{name}{r}'] = run_tool(
                    cmd + ['--work-dir', run_dir], run_dir + '.log')
            got = step_times(run_dir, args.skip)
            for k in got:
                times[name][k] += got[k]
    print(report(times, flops, args, walls))


def report(times, flops, args, walls) -> str:
    med = {k: statistics.median(v['time']) for k, v in times.items()}
    data = {k: statistics.median(v['data_time']) for k, v in times.items()}
    spread = {k: (min(v['time']), max(v['time'])) for k, v in times.items()}
    b = args.batch_size
    share_ms = med['online'] * flops['teacher_share'] * 1e3
    lines = [
        f'BiT-R152x2 -> BiT-R50x1 at {args.size} px, batch {b}, '
        f'{args.images} photographs, {args.epochs} epochs per run, '
        f'{args.rounds} rounds (torch threads: {torch.get_num_threads()})',
        '',
        '| step | median ms | min-max ms | data wait ms | images/s | steps |',
        '| --- | --- | --- | --- | --- | --- |']
    for name in ('online', 'replay', 'label'):
        lines.append(
            f'| {name} | {med[name] * 1e3:.0f} | {spread[name][0] * 1e3:.0f}'
            f'-{spread[name][1] * 1e3:.0f} | {data[name] * 1e3:.0f} | '
            f'{b / med[name]:.1f} | {len(times[name]["time"])} |')
    lines += [
        '',
        f'- teacher {flops["teacher_gflops"]:.2f} GFLOPs/image, student '
        f'{flops["student_gflops"]:.2f} forward: the teacher is '
        f'{100 * flops["teacher_share"]:.0f} % of an online step\'s FLOPs; '
        f'bound on the store\'s speed-up {flops["bound"]:.2f}x',
        f'- student step, online / replay: '
        f'{med["online"] / med["replay"]:.2f}x (bound '
        f'{flops["bound"]:.2f}x)',
        f'- labelling step {med["label"] * 1e3:.0f} ms against the '
        f'teacher\'s FLOP share of the online step {share_ms:.0f} ms: '
        f'{med["label"] * 1e3 / share_ms:.2f}x',
        '- wall times (s, start-up included): ' + ', '.join(
            f'{k} {v:.0f}' for k, v in walls.items()),
    ]
    return '\n'.join(lines)
