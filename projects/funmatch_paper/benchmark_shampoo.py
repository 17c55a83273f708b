"""Step time of Shampoo against torch's AdamW on a BiT-R50x1-sized student.

One run, the optimizers interleaved step by step (their order rotating), each
on its own copy of the same randomly initialised timm ``resnetv2_50x1_bit``
(1000 classes), all built through ``FunMatchOptimWrapperConstructor`` with
gradient clipping at 1.0 as in the recipe. A step is forward, loss, backward,
clip and optimizer step. Medians over the measured steps, after warm-up.

Two Shampoo copies are timed: one recomputing its inverse roots every step
(frequency 1), one that never recomputes after its first step (the plain
step). For a frequency f the per-step cost is then
``(t_recompute + (f - 1) * t_plain) / f``; measuring f = 100 directly would
take hundreds of steps per sample, which a CPU cannot afford.

Example::

    python tools/benchmark_shampoo.py                   # CPU: batch 8, 128 px
    python tools/benchmark_shampoo.py --device cuda     # batch 64, 224 px
"""
import argparse
import collections
import copy
import os
import platform
import statistics
import time
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper

import mmfunmatch  # noqa: F401  (registers Shampoo and the constructor)

NEVER = 10**9  # a recompute frequency that is never reached


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--device',
        default=None,
        help='cpu or cuda (default: cuda when available)')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='default 8 on CPU, 64 on CUDA')
    parser.add_argument(
        '--img-size',
        type=int,
        default=None,
        help='default 128 on CPU, 224 on CUDA')
    parser.add_argument(
        '--warmup',
        type=int,
        default=2,
        help='untimed rounds (each steps every optimizer)')
    parser.add_argument('--iters', type=int, default=5, help='timed rounds')
    parser.add_argument(
        '--freqs',
        type=int,
        nargs='+',
        default=[1, 10, 100],
        help='recompute frequencies to report')
    parser.add_argument('--block-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch CPU threads (default: torch\'s choice)')
    return parser.parse_args(argv)


def build(model: torch.nn.Module, optimizer: dict):
    return build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            constructor='FunMatchOptimWrapperConstructor',
            optimizer=optimizer,
            clip_grad=dict(max_norm=1.0)))


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed_step(model, wrapper, x, y, device) -> Dict[str, float]:
    sync(device)
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    wrapper.backward(loss)
    sync(device)
    t1 = time.perf_counter()
    wrapper.step()
    wrapper.zero_grad()
    sync(device)
    t2 = time.perf_counter()
    return dict(total=t2 - t0, optimizer=t2 - t1)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            tensors = value if isinstance(value, (list, tuple)) else [value]
            total += sum(t.numel() * t.element_size() for t in tensors
                         if isinstance(t, torch.Tensor))
    return total


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    import timm
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    on_cuda = device.type == 'cuda'
    batch = args.batch_size or (64 if on_cuda else 8)
    size = args.img_size or (224 if on_cuda else 128)

    torch.manual_seed(0)
    base = timm.create_model('resnetv2_50x1_bit', num_classes=1000)
    shampoo = dict(
        type='Shampoo',
        lr=args.lr,
        block_size=args.block_size,
        start_preconditioning_step=1,
        weight_decay=0.000375)
    runs = collections.OrderedDict()
    for name, optimizer in (
        ('adamw', dict(type='AdamW', lr=args.lr, weight_decay=0.01)),
        ('shampoo_f1', dict(shampoo, preconditioning_compute_steps=1)),
        ('shampoo_plain', dict(shampoo, preconditioning_compute_steps=NEVER)),
    ):
        model = copy.deepcopy(base).to(device).train()
        runs[name] = (model, build(model, optimizer))
    del base

    shampoo_opt = runs['shampoo_f1'][1].optimizer
    num_params = sum(p.numel() for p in runs['adamw'][0].parameters())
    print(f'device: {device} ({platform.processor() or platform.machine()}'
          f', {torch.get_num_threads()} threads' +
          (f', {torch.cuda.get_device_name(device)}' if on_cuda else '') +
          f'), torch {torch.__version__}, load average '
          f'{os.getloadavg()[0]:.2f}')
    print(f'model: resnetv2_50x1_bit, {num_params / 1e6:.1f} M parameters, '
          f'batch {batch} at {size} px')
    print(f'param groups given to Shampoo: {len(shampoo_opt.param_groups)} '
          f'(sizes {[len(g["params"]) for g in shampoo_opt.param_groups]})')

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 1000, (batch, ), generator=gen).to(device)

    times: Dict[str, List[Dict[str, float]]] = {k: [] for k in runs}
    names = list(runs)
    for round_ in range(args.warmup + args.iters):
        shift = round_ % len(names)  # rotate who goes first
        for name in names[shift:] + names[:shift]:
            model, wrapper = runs[name]
            result = timed_step(model, wrapper, x, y, device)
            if round_ >= args.warmup:
                times[name].append(result)
        print(
            f'round {round_ + 1}/{args.warmup + args.iters}: ' +
            ', '.join(f'{k} {v[-1]["total"]:.2f}s'
                      for k, v in times.items() if v),
            flush=True)

    def median(name, key='total'):
        return statistics.median(t[key] for t in times[name])

    def fastest(name):
        return min(t['total'] for t in times[name])

    sizes = collections.Counter()
    for state in shampoo_opt.state.values():
        for stat in state['statistics']:
            sizes[stat.shape[-1]] += 1
    print(f'preconditioner matrices by size: '
          f'{dict(sorted(sizes.items(), reverse=True))}')
    print(f'optimizer state: AdamW '
          f'{state_bytes(runs["adamw"][1].optimizer) / 2**20:.0f} MiB, '
          f'Shampoo {state_bytes(shampoo_opt) / 2**20:.0f} MiB')
    print(f'load average at the end: {os.getloadavg()[0]:.2f}')

    print()
    print(f'{args.iters} interleaved steps after {args.warmup} warm-up '
          f'rounds; step = forward + backward + clip + optimizer. Median '
          f'(and fastest) step in seconds.')
    print()
    print('| recompute every | AdamW step | Shampoo step | Shampoo / AdamW '
          '(medians) | Shampoo / AdamW (fastest) | how |')
    print('| --- | --- | --- | --- | --- | --- |')
    for freq in args.freqs + [None]:
        row = []
        for stat in (median, fastest):
            adamw = stat('adamw')
            recompute, plain = stat('shampoo_f1'), stat('shampoo_plain')
            cost = plain if freq is None else (recompute +
                                               (freq - 1) * plain) / freq
            row.append((adamw, cost))
        (adamw, cost), (adamw_min, cost_min) = row
        how = ('measured' if freq in (1, None) else
               f'(t_f1 + {freq - 1} t_plain) / {freq}')
        label = 'never (plain step)' if freq is None else freq
        print(f'| {label} | {adamw:.2f} ({adamw_min:.2f}) | {cost:.2f} '
              f'({cost_min:.2f}) | {cost / adamw:.2f} | '
              f'{cost_min / adamw_min:.2f} | {how} |')
    print()
    print('Optimizer part alone (clip + step), medians: AdamW '
          f'{median("adamw", "optimizer"):.2f} s, Shampoo recomputing '
          f'{median("shampoo_f1", "optimizer"):.2f} s, Shampoo plain '
          f'{median("shampoo_plain", "optimizer"):.2f} s.')

