"""Speed of a function-matching training step, against a hand-written loop.

:func:`benchmark` builds MMEngine's ``Runner`` from a config and times the
real training step (``runner.model.train_step`` with the runner's optimizer
wrapper on batches from the runner's train dataloader). Beside it, in the
same process and interleaved with it, it times a minimal hand-written PyTorch
loop doing the same work (same teacher, a copy of the student, one batch
already on the device, normalisation and mixup, a no-grad teacher forward,
student forward/backward, the same clipping and optimizer), the teacher's fp32
forward against its fast path (bf16 autocast + channels_last +
inference_mode), and ``ConsistentView`` (one decode, one crop, one resize per
model) against two independent decode+crop pipelines on real image files.
:func:`format_report` renders the result as markdown tables.

Runner hooks (logging, checkpointing, the non-finite guard) are not run: the
step measured is ``train_step``, which is what ``runner.train()`` calls per
iteration between hooks.
"""
import argparse
import contextlib
import copy
import inspect
import json
import math
import os
import os.path as osp
import resource
import statistics
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from torch.utils.flop_counter import FlopCounterMode

import mmfunmatch  # noqa: F401  (registers everything, applies compat)
from mmfunmatch.models.fast_path import (fast_path_fidelity,
                                         fast_path_violations,
                                         rounding_error_bound)
from mmfunmatch.utils import output_logits

# Dense bf16 tensor-core peaks (FLOP/s) of common training GPUs, matched
# against torch.cuda.get_device_name(); pass `peak_flops` for others.
PEAK_BF16_FLOPS = {
    'H200': 989.4e12,
    'H100': 989.4e12,  # SXM; the PCIe card is 756e12
    'A100': 312e12,
    'L40S': 362e12,
}

# Numeric report fields that every run fills with a positive finite number.
REQUIRED_FIELDS = (
    'batch_size', 'iters', 'images_per_s', 'images_per_s_train_step',
    'step_ms', 'train_step_ms', 'data_wait_ms', 'preprocess_ms',
    'teacher_forward_ms', 'student_fwd_bwd_ms', 'optimizer_ms',
    'instrumented_step_ms', 'hand_step_ms', 'hand_images_per_s',
    'ratio_vs_hand', 'peak_memory_mib', 'teacher_fp32_ms', 'teacher_fast_ms',
    'teacher_fast_ratio', 'fast_top1_agreement', 'fast_max_abs_dp',
    'fast_max_abs_dlogit',
    'teacher_gflops_per_image', 'student_gflops_per_image',
    'model_gflops_per_image', 'achieved_tflops', 'cv_photo_ms',
    'cv_photo_independent_ms', 'cv_photo_ratio', 'cv_same_size_ms',
    'cv_same_size_single_ms', 'cv_same_size_vs_single', 'cv_ensemble_ms',
    'cv_ensemble_single_ms', 'cv_ensemble_vs_single')


# -- small utilities ----------------------------------------------------------
def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that host timestamps bound it."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _median_ms(seconds: Sequence[float]) -> float:
    return 1000.0 * statistics.median(seconds)


def _peak_rss_mib() -> float:
    """High-water resident set size of this process (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _plain_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The bare network of an mmpretrain classifier, returning logits.

    timm models (``TimmClassifier``) are called directly; other classifiers
    through their own ``mode='tensor'`` forward (backbone, neck, head).
    """
    inner = getattr(model, 'model', None)
    if isinstance(inner, nn.Module):
        return inner

    def forward(x: torch.Tensor) -> torch.Tensor:
        return output_logits(model(x, mode='tensor'))

    return forward


def write_photos(out_dir: str,
                 num: int,
                 size: Sequence[int] = (500, 375),
                 ext: str = '.jpg',
                 seed: int = 0) -> List[str]:
    """Write ``num`` photographs of ``size`` (w, h) for data-path timing.

    They are random crops (60-100 % of the area, random flips) of
    scikit-learn's two sample photographs, resized to ImageNet's typical
    500 x 375 by default, so that decoding costs what real data costs.

    Args:
        out_dir (str): Folder to write into (created).
        num (int): Number of files.
        size (Sequence[int]): (width, height). Defaults to (500, 375).
        ext (str): '.jpg' or '.png'. Defaults to '.jpg'.
        seed (int): Seed of the crops. Defaults to 0.

    Returns:
        list[str]: The paths written.
    """
    from sklearn.datasets import load_sample_images
    sources = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
               for img in load_sample_images().images]
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(num):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        frac = math.sqrt(rng.uniform(0.6, 1.0))
        ch, cw = int(h * frac), int(w * frac)
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        img = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], tuple(size),
                         interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            img = cv2.flip(img, 1)
        path = osp.join(out_dir, f'photo_{i:04d}{ext}')
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


class _Batches:
    """Endless batches from a dataloader, starting a new epoch when one ends.
    """

    def __init__(self, loader) -> None:
        self.loader = loader
        self.epoch = 0
        self._it: Optional[Iterator] = None

    def __next__(self):
        while True:
            if self._it is None:
                sampler = getattr(self.loader, 'sampler', None)
                if hasattr(sampler, 'set_epoch'):
                    sampler.set_epoch(self.epoch)
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
                self.epoch += 1


class _PhaseTimer:
    """Accumulates wall time spent inside chosen methods during one step.

    Inside :meth:`installed` the methods are shadowed by timing instance
    attributes (removed on exit), so the code measured is unchanged and the
    uninstrumented steps run without them. On a GPU each boundary
    synchronises, which is why instrumented steps are timed apart.

    Args:
        device (torch.device): The device whose work is timed.
        targets (Sequence[tuple]): ``(owner, method name, phase)`` triples.
    """

    def __init__(self, device: torch.device, targets: Sequence[tuple]) -> None:
        self.device = device
        self.targets = list(targets)
        self.spent: Dict[str, float] = {}

    def _timed(self, original: Callable, phase: str) -> Callable:

        def timed(*args, **kwargs):
            _sync(self.device)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            _sync(self.device)
            self.spent[phase] = (self.spent.get(phase, 0.0) +
                                 time.perf_counter() - start)
            return out

        return timed

    @contextlib.contextmanager
    def installed(self):
        self.spent = {}
        for owner, name, phase in self.targets:
            setattr(owner, name, self._timed(getattr(owner, name), phase))
        try:
            yield self
        finally:
            for owner, name, _ in self.targets:
                delattr(owner, name)


# -- the config and the runner ------------------------------------------------
def prepare_config(cfg: Config,
                   batch_size: Optional[int] = None,
                   photo_dir: Optional[str] = None,
                   work_dir: Optional[str] = None) -> Config:
    """Adapt a training config for benchmarking (a copy is returned).

    Args:
        cfg (Config): The training config.
        batch_size (int, optional): Override the train batch size.
        photo_dir (str, optional): Train on the image files in this folder
            (unlabelled, through the config's own train pipeline) instead of
            the config's data set, e.g. where ImageNet is not at hand.
        work_dir (str, optional): The runner's work directory (logs only).
    """
    cfg = copy.deepcopy(cfg)
    cfg.launcher = 'none'
    cfg.log_level = 'WARNING'
    cfg.load_from, cfg.resume = None, False
    cfg.work_dir = work_dir or cfg.get('work_dir') or tempfile.mkdtemp(
        prefix='mmfunmatch_bench_')
    # Only the train loop is used; nothing to validate or test.
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    if photo_dir is not None:
        pipeline = cfg.train_dataloader.dataset.pipeline
        cfg.train_dataloader.dataset = dict(
            type='CustomDataset', data_root=photo_dir, data_prefix='',
            with_label=False, pipeline=pipeline)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """A runner whose model, train dataloader and optimizer wrapper are built
    as ``Runner.train()`` builds them, without running any hook."""
    runner = Runner.from_cfg(cfg)
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner._init_model_weights()
    runner.optim_wrapper.initialize_count_status(
        runner.model, 0, runner.train_loop.max_iters)
    return runner


# -- the hand-written reference ---------------------------------------------
class HandWrittenStep:
    """The same training step written directly in PyTorch.

    From the raw uint8 batch already on the device: per-view normalisation
    (each model's own mean/std, BGR to RGB), one folded uniform mixup weight
    and the batch rolled by one for every view (when the config mixes), a
    no-grad teacher forward, student forward, KL at the distiller's
    temperature, backward, the config's gradient clipping and an optimizer
    step. The teachers are the distiller's own (frozen, shared), the student
    a deep copy with an optimizer of the runner's class and param groups.
    Teacher dtype and memory format follow the distiller's settings, so both
    sides do the same arithmetic.

    Args:
        distiller (nn.Module): The runner's ``FunMatchDistiller``.
        optim_wrapper: The runner's optimizer wrapper (for the optimizer's
            class, groups and the gradient clipping).
        raw_inputs (dict): A collated batch's inputs on the device,
            ``dict(student=uint8 NCHW, teachers=[uint8 NCHW, ...])``.
    """

    def __init__(self, distiller: nn.Module, optim_wrapper,
                 raw_inputs: dict) -> None:
        pre = distiller.data_preprocessor
        stack = (lambda v: v if isinstance(v, torch.Tensor) else
                 torch.stack(list(v)))
        self.raw = [stack(raw_inputs['student'])] + [
            stack(v) for v in raw_inputs['teachers']]
        self.stats = [(pre.mean, pre.std)] + [
            (getattr(pre, f'teacher_mean_{i}'),
             getattr(pre, f'teacher_std_{i}'))
            for i in range(len(distiller.teachers))
        ]
        self.to_rgb = pre.to_rgb
        self.mixup = pre.batch_augment is not None
        self.student_model = copy.deepcopy(distiller.student)
        self.student = _plain_forward(self.student_model)
        self.teachers = [_plain_forward(t) for t in distiller.teachers]
        self.dtype = distiller.teacher_dtype
        self.channels_last = distiller.channels_last
        self.tau = float(getattr(distiller.distill_loss, 'tau', 1.0))
        clip = getattr(optim_wrapper, 'clip_grad_kwargs', None) or {}
        self.max_norm = clip.get('max_norm') if clip.get(
            'type', 'norm') == 'norm' else None

        # The runner's optimizer, rebuilt on the copy's parameters.
        name_of = {id(p): n for n, p in distiller.student.named_parameters()}
        params = dict(self.student_model.named_parameters())
        optimizer = optim_wrapper.optimizer
        groups = []
        for group in optimizer.param_groups:
            group = dict(group)
            group['params'] = [params[name_of[id(p)]] for p in group['params']]
            groups.append(group)
        self.params = list(self.student_model.parameters())
        # Defaults the constructor takes (some, e.g. AdamW's
        # decoupled_weight_decay, are fixed by the class, not arguments).
        accepted = inspect.signature(type(optimizer)).parameters
        self.optimizer = type(optimizer)(groups, **{
            k: v for k, v in optimizer.defaults.items() if k in accepted})
        self.student_model.train()

    def views(self) -> List[torch.Tensor]:
        """Normalised and mixed views: student first, then teachers."""
        views = []
        for raw, (mean, std) in zip(self.raw, self.stats):
            x = raw.flip(1) if self.to_rgb and raw.size(1) == 3 else raw
            views.append((x.float() - mean) / std)
        if self.mixup:
            lam = float(torch.rand(1))
            lam = max(lam, 1 - lam)
            views = [lam * v + (1 - lam) * v.roll(1, dims=0) for v in views]
        return views

    def __call__(self) -> None:
        x_student, *x_teachers = self.views()
        with torch.no_grad(), torch.autocast(
                x_student.device.type, dtype=self.dtype or torch.float32,
                enabled=self.dtype is not None):
            target = torch.stack([
                fn(x.contiguous(memory_format=torch.channels_last)
                   if self.channels_last else x).float()
                for fn, x in zip(self.teachers, x_teachers)
            ]).mean(0)
        logits = self.student(x_student).float()
        loss = F.kl_div(
            F.log_softmax(logits / self.tau, 1),
            F.log_softmax(target / self.tau, 1),
            log_target=True, reduction='batchmean') * self.tau**2
        loss.backward()
        if self.max_norm is not None:
            nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


# -- teacher fast path --------------------------------------------------------
def teacher_forward_fns(teacher: nn.Module, dtype: torch.dtype = torch.bfloat16
                        ) -> Dict[str, Callable]:
    """The teacher's plain fp32 forward and its fast path, as functions.

    'fp32': NCHW weights and inputs, ``torch.no_grad``. 'fast': a
    channels-last copy under ``torch.inference_mode`` and ``dtype`` autocast
    (what ``FunMatchDistiller(teacher_dtype='bf16', channels_last=True)``
    runs).
    """
    ref_model = copy.deepcopy(teacher).to(
        memory_format=torch.contiguous_format)
    fast_model = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
    ref_fn, fast_fn = _plain_forward(ref_model), _plain_forward(fast_model)

    def fp32(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ref_fn(x.contiguous()).float()

    def fast(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(x.device.type,
                                                    dtype=dtype):
            x = x.contiguous(memory_format=torch.channels_last)
            return fast_fn(x).float()

    return dict(fp32=fp32, fast=fast)


# -- data path ----------------------------------------------------------------
def compare_consistent_view(paths: Sequence[str],
                            view_cfg: dict,
                            rounds: int = 3) -> Dict[str, float]:
    """ConsistentView against two independent decode+crop pipelines.

    Both start from the image file. The consistent path is
    ``LoadImageFromFile`` + ``ConsistentView`` (one decode, one crop, one
    resize per model) + ``PackFunMatchInputs``; the independent path runs,
    per model, its own ``LoadImageFromFile`` + ``RandomResizedCrop`` (same
    scale, ratio and interpolation) + ``RandomFlip`` + ``PackInputs``, which
    is what two ordinary pipelines do.
    Per-image times of the consistent path and of each independent
    pipeline, interleaved (the order rotates), medians, with one torch
    thread as in a DataLoader worker.

    Args:
        paths (Sequence[str]): Image files.
        view_cfg (dict): A ``ConsistentView`` config (student and teacher
            sizes, scale, ratio, flip_prob, interpolation).
        rounds (int): Passes over ``paths``. Defaults to 3.

    Returns:
        dict: ``consistent_ms``, ``independent_ms`` (per image, the sum
        of the pipelines' medians), ``ratio`` (consistent / independent),
        ``single_ms`` (the student's pipeline alone: one ordinary
        single-view pipeline) and ``vs_single`` (the consistent path's
        images/s relative to that single-view pipeline).
    """
    from mmcv.transforms import Compose
    from mmpretrain.registry import TRANSFORMS

    view_cfg = dict(view_cfg, type='ConsistentView')
    view = TRANSFORMS.build(view_cfg)
    load = dict(type='LoadImageFromFile')
    # Packing included: it is where a lazily flipped view gets copied.
    consistent = Compose([
        TRANSFORMS.build(load), view,
        TRANSFORMS.build(dict(type='PackFunMatchInputs'))
    ])
    sizes = [view.student_size] + list(view.teacher_sizes)
    independent = [
        Compose([
            TRANSFORMS.build(load),
            TRANSFORMS.build(
                dict(type='RandomResizedCrop', scale=(size[1], size[0]),
                     crop_ratio_range=view.scale,
                     aspect_ratio_range=view.ratio, backend='cv2',
                     interpolation=view.interpolation)),
            TRANSFORMS.build(
                dict(type='RandomFlip', prob=view.flip_prob,
                     direction='horizontal')),
            TRANSFORMS.build(dict(type='PackInputs')),
        ]) for size in sizes
    ]

    runs = dict(consistent=lambda p: consistent(dict(img_path=p)))
    for k, pipeline in enumerate(independent):
        runs[f'pipeline{k}'] = (lambda p, pipe=pipeline: pipe(
            dict(img_path=p)))
    names = list(runs)
    times: Dict[str, List[float]] = {name: [] for name in names}
    # One torch thread, as in a DataLoader worker (packing uses torch).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for path in paths[:2]:  # warm the file cache and the code paths
            for name in names:
                runs[name](path)
        for r in range(rounds):
            for i, path in enumerate(paths):
                first = (r + i) % len(names)  # the order rotates
                for name in names[first:] + names[:first]:
                    start = time.perf_counter()
                    runs[name](path)
                    times[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    consistent_ms = _median_ms(times['consistent'])
    # Each pipeline's own median: one slow outlier of one pipeline does not
    # move the others'.
    independent_ms = sum(
        _median_ms(times[f'pipeline{k}']) for k in range(len(independent)))
    single_ms = _median_ms(times['pipeline0'])
    return dict(consistent_ms=consistent_ms, independent_ms=independent_ms,
                ratio=consistent_ms / independent_ms, single_ms=single_ms,
                vs_single=single_ms / consistent_ms)


def _pipeline_view_cfg(cfg: Config) -> Optional[dict]:
    for step in cfg.train_dataloader.dataset.get('pipeline', []):
        if step.get('type') == 'ConsistentView':
            out = dict(step)
            out.pop('type')
            return out
    return None


# -- FLOPs --------------------------------------------------------------------
def count_flops(fn: Callable[[torch.Tensor], torch.Tensor],
                x: torch.Tensor) -> int:
    """Forward FLOPs of ``fn(x)`` (matrix products and convolutions, 2 per
    multiply-add) counted by torch's ``FlopCounterMode``."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(x)
    return counter.get_total_flops()


def _peak_flops(device: torch.device,
                peak_flops: Optional[float]) -> Optional[float]:
    if peak_flops:
        return peak_flops
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value
    return None


# -- the benchmark ------------------------------------------------------------
def benchmark(cfg: Config,
              iters: int = 10,
              warmup: int = 2,
              batch_size: Optional[int] = None,
              photo_dir: Optional[str] = None,
              cv_images: int = 16,
              cv_rounds: int = 5,
              peak_flops: Optional[float] = None,
              work_dir: Optional[str] = None) -> dict:
    """Measure a function-matching config's training step.

    Passes, in order: (1) ``warmup`` + ``iters`` contiguous real steps
    (data wait + ``train_step``): images/s and peak memory; (2) ``warmup`` +
    ``iters`` rounds interleaving, in rotating order, an uninstrumented
    ``train_step``, an instrumented one (phase split) and the hand-written
    step; (3) teacher fp32 against its fast path, interleaved; (4) FLOPs;
    (5) ``ConsistentView`` against independent pipelines on photographs and,
    when the config's pipeline has one, on the config's own images. Times
    are medians.

    Args:
        cfg (Config): A ``FunMatchDistiller`` training config.
        iters (int): Timed iterations per pass. Defaults to 10.
        warmup (int): Untimed iterations first. Defaults to 2.
        batch_size (int, optional): Train batch size override.
        photo_dir (str, optional): Train on these image files instead of the
            config's data set (see :func:`prepare_config`).
        cv_images (int): Photographs written for the data-path comparison.
            Defaults to 16.
        cv_rounds (int): Passes over them. Defaults to 5.
        peak_flops (float, optional): Device peak FLOP/s for the MFU; known
            GPUs are looked up when omitted (no MFU on CPU).
        work_dir (str, optional): Runner work directory (logs).

    Returns:
        dict: Numbers (see ``REQUIRED_FIELDS``, plus ``mfu`` and
        ``cv_config_*`` where measurable) and descriptive strings under
        ``'info'``.
    """
    if iters < 1 or warmup < 0:
        raise ValueError('benchmark: iters >= 1 and warmup >= 0 needed')
    cfg = prepare_config(cfg, batch_size, photo_dir, work_dir)
    runner = build_runner(cfg)
    model = runner.model
    distiller = _unwrap(model)
    if not hasattr(distiller, 'teacher_logits'):
        raise ValueError(
            f'benchmark: the config\'s model is a {type(distiller).__name__};'
            f' a FunMatchDistiller config is needed (teacher and student).')
    optim_wrapper = runner.optim_wrapper
    loader = runner.train_dataloader
    batches = _Batches(loader)
    device = next(distiller.student.parameters()).device
    batch = loader.batch_size
    report: dict = dict(batch_size=batch, iters=iters)

    # (1) Contiguous real steps: what training throughput looks like.
    model.train()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    waits, steps = [], []
    for i in range(warmup + iters):
        start = time.perf_counter()
        data = next(batches)
        got = time.perf_counter()
        model.train_step(data, optim_wrapper=optim_wrapper)
        _sync(device)
        end = time.perf_counter()
        if i >= warmup:
            waits.append(got - start)
            steps.append(end - start)
    report['data_wait_ms'] = _median_ms(waits)
    report['step_ms'] = _median_ms(steps)
    report['images_per_s'] = batch / statistics.median(steps)
    report['peak_memory_mib'] = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == 'cuda' else _peak_rss_mib())

    # (2) Interleaved: framework step, instrumented step, hand-written step.
    raw = distiller.data_preprocessor.cast_data(next(batches))
    if not isinstance(raw['inputs'], dict):
        raise ValueError(
            'benchmark: the train pipeline gives no teacher views; use '
            'ConsistentView with teacher_sizes and PackFunMatchInputs.')
    hand = HandWrittenStep(distiller, optim_wrapper, raw['inputs'])
    sample = distiller.data_preprocessor(raw, True)
    timer = _PhaseTimer(device, [
        (distiller.data_preprocessor, 'forward', 'preprocess'),
        (distiller, 'teacher_logits', 'teacher'),
        (optim_wrapper, 'step', 'optimizer'),
        (optim_wrapper, 'zero_grad', 'optimizer'),
    ])
    measured = ('preprocess', 'teacher', 'optimizer')
    phases: Dict[str, List[float]] = {
        k: [] for k in measured + ('student', 'total')}
    framework_s, hand_s = [], []

    # Batches are fetched before the pass so that data loading does not
    # compete for the CPU with the steps being compared (pass 1 measured it).
    prefetched = [next(batches) for _ in range(2 * (warmup + iters))]

    def framework_step() -> float:
        data = prefetched.pop()
        _sync(device)
        start = time.perf_counter()
        model.train_step(data, optim_wrapper=optim_wrapper)
        _sync(device)
        return time.perf_counter() - start

    def instrumented_step() -> float:
        with timer.installed():
            return framework_step()

    def hand_step() -> float:
        _sync(device)
        start = time.perf_counter()
        hand()
        _sync(device)
        return time.perf_counter() - start

    kinds = ('framework', 'instrumented', 'hand')
    run = dict(framework=framework_step, instrumented=instrumented_step,
               hand=hand_step)
    for i in range(warmup + iters):
        seconds, spent = {}, {}
        for k in range(len(kinds)):  # the order rotates every round
            kind = kinds[(i + k) % len(kinds)]
            seconds[kind] = run[kind]()
            if kind == 'instrumented':
                spent = dict(timer.spent)
        if i < warmup:
            continue
        framework_s.append(seconds['framework'])
        hand_s.append(seconds['hand'])
        total = seconds['instrumented']
        phases['total'].append(total)
        for key in measured:
            phases[key].append(spent.get(key, 0.0))
        # The rest of train_step: student forward, loss, backward.
        phases['student'].append(total - sum(spent.get(k, 0.0)
                                             for k in measured))
    report['train_step_ms'] = _median_ms(framework_s)
    report['images_per_s_train_step'] = batch / statistics.median(framework_s)
    report['hand_step_ms'] = _median_ms(hand_s)
    report['hand_images_per_s'] = batch / statistics.median(hand_s)
    report['ratio_vs_hand'] = report['train_step_ms'] / report['hand_step_ms']
    report['preprocess_ms'] = _median_ms(phases['preprocess'])
    report['teacher_forward_ms'] = _median_ms(phases['teacher'])
    report['optimizer_ms'] = _median_ms(phases['optimizer'])
    report['student_fwd_bwd_ms'] = _median_ms(phases['student'])
    report['instrumented_step_ms'] = _median_ms(phases['total'])
    del hand

    # (3) Teacher fp32 against the fast path, on this batch's teacher views.
    views = sample['inputs']['teachers']
    fns = [teacher_forward_fns(t) for t in distiller.teachers]
    fp32_s, fast_s = [], []
    for i in range(max(warmup, 1) + iters):
        order = ['fp32', 'fast'] if i % 2 == 0 else ['fast', 'fp32']
        for name in order:
            _sync(device)
            start = time.perf_counter()
            for f, v in zip(fns, views):
                f[name](v)
            _sync(device)
            if i >= max(warmup, 1):
                (fp32_s if name == 'fp32' else fast_s).append(
                    time.perf_counter() - start)
    report['teacher_fp32_ms'] = _median_ms(fp32_s)
    report['teacher_fast_ms'] = _median_ms(fast_s)
    report['teacher_fast_ratio'] = (report['teacher_fast_ms'] /
                                    report['teacher_fp32_ms'])
    fidelity, violations = [], []
    for f, v, teacher in zip(fns, views, distiller.teachers):
        ref, fast = f['fp32'](v), f['fast'](v)
        fidelity.append(fast_path_fidelity(ref, fast))
        violations += fast_path_violations(
            ref, fast, rounding_error_bound(teacher, torch.bfloat16))
    report['fast_top1_agreement'] = min(f['top1_agreement'] for f in fidelity)
    report['fast_max_abs_dp'] = max(f['max_abs_dp'] for f in fidelity)
    report['fast_max_abs_dlogit'] = max(f['max_abs_dlogit'] for f in fidelity)
    # Outside the bf16 rounding bound: a broken fast path, on any CPU.
    report['fast_violations'] = len(violations)
    del fns

    # (4) Model FLOPs per image: teacher forward + 3 x student forward
    # (forward + backward).
    n = sample['inputs']['student'].size(0)
    teacher_flops = sum(
        count_flops(_plain_forward(t), v)
        for t, v in zip(distiller.teachers, views)) / n
    student_flops = count_flops(_plain_forward(distiller.student),
                                sample['inputs']['student']) / n
    model_flops = teacher_flops + 3 * student_flops
    report['teacher_gflops_per_image'] = teacher_flops / 1e9
    report['student_gflops_per_image'] = student_flops / 1e9
    report['model_gflops_per_image'] = model_flops / 1e9
    report['achieved_tflops'] = model_flops * report['images_per_s'] / 1e12
    peak = _peak_flops(device, peak_flops)
    if peak:
        report['mfu'] = model_flops * report['images_per_s'] / peak

    # (5) Data path: photographs at the paper's cross-resolution sizes, and
    # the config's own ConsistentView on the config's own images.
    with tempfile.TemporaryDirectory() as tmp:
        photos = write_photos(tmp, cv_images)
        cv = compare_consistent_view(
            photos, dict(student_size=160, teacher_sizes=[224]), cv_rounds)
        report['cv_photo_ms'] = cv['consistent_ms']
        report['cv_photo_independent_ms'] = cv['independent_ms']
        report['cv_photo_ratio'] = cv['ratio']
        # The main recipe's S224/T224 (views shared) and the T224 + T384
        # ensemble, against one single-view pipeline.
        for key, sizes in (('cv_same_size', [224]),
                           ('cv_ensemble', [224, 384])):
            cv = compare_consistent_view(
                photos, dict(student_size=224, teacher_sizes=sizes),
                cv_rounds)
            report[f'{key}_ms'] = cv['consistent_ms']
            report[f'{key}_single_ms'] = cv['single_ms']
            report[f'{key}_vs_single'] = cv['vs_single']
    view_cfg = _pipeline_view_cfg(cfg)
    dataset = loader.dataset
    if view_cfg is not None and view_cfg.get('teacher_sizes'):
        paths = [
            dataset.get_data_info(i)['img_path']
            for i in range(min(len(dataset), max(cv_images, 32)))
        ]
        cv = compare_consistent_view(paths, view_cfg, cv_rounds)
        report['cv_config_ms'] = cv['consistent_ms']
        report['cv_config_independent_ms'] = cv['independent_ms']
        report['cv_config_ratio'] = cv['ratio']

    report['info'] = dict(
        fast_violations='; '.join(violations) or '-',
        config=osp.basename(cfg.filename) if cfg.filename else '(config)',
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'cpu'),
        torch_threads=str(torch.get_num_threads()),
        num_workers=str(cfg.train_dataloader.get('num_workers', 0)),
        student_input='x'.join(
            str(s) for s in sample['inputs']['student'].shape[1:]),
        teacher_inputs=', '.join('x'.join(str(s) for s in v.shape[1:])
                                 for v in views),
        teacher_dtype=str(distiller.teacher_dtype or 'fp32'),
        channels_last=str(distiller.channels_last),
        cv_config_view=str(view_cfg) if view_cfg else '-',
    )
    return report


# -- the report ---------------------------------------------------------------
def _verdict(value: float, target: float) -> str:
    return 'met' if value <= target else 'NOT met'


def format_report(report: dict,
                  ratio_target: float = 1.05,
                  cv_target: float = 0.6) -> str:
    """Markdown tables of a :func:`benchmark` report."""
    r, info = report, report.get('info', {})
    f, g = '{:.1f}'.format, '{:.3g}'.format
    memory = ('process peak RSS' if info.get('device', 'cpu') == 'cpu' else
              'GPU max allocated')
    lines = [
        f'### {info.get("config", "")}: device {info.get("device")}, '
        f'batch {r["batch_size"]}, {r["iters"]} timed iterations '
        f'(medians), torch threads {info.get("torch_threads")}, '
        f'dataloader workers {info.get("num_workers")}; student input '
        f'{info.get("student_input")}, teacher input(s) '
        f'{info.get("teacher_inputs")}; teacher dtype '
        f'{info.get("teacher_dtype")}, channels_last '
        f'{info.get("channels_last")}',
        '',
        '| training step | mmfunmatch | hand-written PyTorch | '
        'mmfunmatch / hand-written |',
        '| --- | --- | --- | --- |',
        f'| train_step, ms (interleaved) | {f(r["train_step_ms"])} | '
        f'{f(r["hand_step_ms"])} | {r["ratio_vs_hand"]:.3f} (target <= '
        f'{ratio_target}: {_verdict(r["ratio_vs_hand"], ratio_target)}) |',
        f'| images/s, train_step only | {g(r["images_per_s_train_step"])} | '
        f'{g(r["hand_images_per_s"])} | |',
        f'| images/s, end to end (data wait + train_step, contiguous) | '
        f'{g(r["images_per_s"])} | - | |',
        f'| peak memory, MiB ({memory}) | {f(r["peak_memory_mib"])} | - | |',
        '',
        '| phase (instrumented train_step; data wait from the contiguous '
        'pass) | ms/step |',
        '| --- | --- |',
        f'| data wait | {r["data_wait_ms"]:.2f} |',
        f'| preprocess (to device, normalise, mixup) | '
        f'{r["preprocess_ms"]:.2f} |',
        f'| teacher forward | {r["teacher_forward_ms"]:.2f} |',
        f'| student forward + loss + backward | '
        f'{r["student_fwd_bwd_ms"]:.2f} |',
        f'| optimizer (clip + step + zero_grad) | {r["optimizer_ms"]:.2f} |',
        f'| instrumented train_step total | '
        f'{r["instrumented_step_ms"]:.2f} |',
        '',
        '| teacher forward | fp32 (NCHW, no_grad) | fast (bf16 autocast + '
        'channels_last + inference_mode) | fast / fp32 |',
        '| --- | --- | --- | --- |',
        f'| ms per batch | {f(r["teacher_fp32_ms"])} | '
        f'{f(r["teacher_fast_ms"])} | {r["teacher_fast_ratio"]:.3f} |',
        f'| fidelity on this batch | | top-1 agreement '
        f'{100 * r["fast_top1_agreement"]:.1f} %, max abs delta p '
        f'{r["fast_max_abs_dp"]:.2e}, max abs delta logit '
        f'{r["fast_max_abs_dlogit"]:.2e}; outside the bf16 rounding bound: '
        f'{r["fast_violations"]} | |',
        '',
        '| data path, ms per image | ConsistentView (1 decode, 1 crop, '
        'resize per model) | two independent decode+crop pipelines | ratio '
        f'(target <= {cv_target}) |',
        '| --- | --- | --- | --- |',
        f'| photographs 500x375 JPEG, student 160 / teacher 224 | '
        f'{r["cv_photo_ms"]:.2f} | {r["cv_photo_independent_ms"]:.2f} | '
        f'{r["cv_photo_ratio"]:.3f} '
        f'({_verdict(r["cv_photo_ratio"], cv_target)}) |',
    ]
    lines += [
        '',
        '| data path, ms per image | ConsistentView | one single-view '
        'pipeline (RandomResizedCrop 224) | ConsistentView images/s / '
        'single-view images/s |',
        '| --- | --- | --- | --- |',
        f'| photographs, S224 / T224 (one render shared) | '
        f'{r["cv_same_size_ms"]:.2f} | {r["cv_same_size_single_ms"]:.2f} | '
        f'{r["cv_same_size_vs_single"]:.3f} (target >= 1: '
        f'{_verdict(1 / r["cv_same_size_vs_single"], 1.0)}) |',
        f'| photographs, S224 / T224 + T384 ensemble | '
        f'{r["cv_ensemble_ms"]:.2f} | {r["cv_ensemble_single_ms"]:.2f} | '
        f'{r["cv_ensemble_vs_single"]:.3f} |',
    ]
    if 'cv_config_ratio' in r:
        lines.append(
            f'| the config\'s own images and ConsistentView | '
            f'{r["cv_config_ms"]:.2f} | {r["cv_config_independent_ms"]:.2f} '
            f'| {r["cv_config_ratio"]:.3f} '
            f'({_verdict(r["cv_config_ratio"], cv_target)}) |')
    if 'mfu' in r:
        mfu = f'{100 * r["mfu"]:.1f} %'
    elif info.get('device', 'cpu') == 'cpu':
        mfu = 'n/a (CPU)'
    else:
        mfu = 'n/a (unknown GPU peak: pass --peak-tflops)'
    lines += [
        '',
        '| FLOPs (FlopCounterMode) | GFLOP per image |',
        '| --- | --- |',
        f'| teacher forward | {r["teacher_gflops_per_image"]:.3f} |',
        f'| student forward | {r["student_gflops_per_image"]:.3f} |',
        f'| teacher fwd + 3 x student fwd | '
        f'{r["model_gflops_per_image"]:.3f} |',
        f'| achieved, end-to-end images/s | '
        f'{r["achieved_tflops"] * 1e3:.2f} GFLOP/s; MFU {mfu} |',
    ]
    return '\n'.join(lines)


# -- the command line (tools/benchmark.py) -----------------------------------
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark the training step of a FunMatch config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed iterations per pass')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed iterations before each pass')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='override the train batch size')
    parser.add_argument(
        '--photo-data', type=int, default=0, metavar='N',
        help='train on N generated 500x375 JPEG photographs instead of the '
        'config\'s data set (e.g. when ImageNet is not at hand)')
    parser.add_argument('--cv-images', type=int, default=16,
                        help='photographs for the ConsistentView comparison')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='device peak TFLOP/s for the MFU (known GPUs '
                        'are looked up)')
    parser.add_argument('--work-dir', default=None,
                        help='runner work directory (logs only)')
    parser.add_argument('--json', default=None,
                        help='also write the raw report to this file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. '
        'model.teachers.0.checkpoint=None)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    with tempfile.TemporaryDirectory() as tmp:
        photo_dir = None
        if args.photo_data:
            photo_dir = tmp
            write_photos(tmp, args.photo_data)
        report = benchmark(
            cfg, iters=args.iters, warmup=args.warmup,
            batch_size=args.batch_size, photo_dir=photo_dir,
            cv_images=args.cv_images,
            peak_flops=(args.peak_tflops * 1e12
                        if args.peak_tflops else None),
            work_dir=args.work_dir or tempfile.mkdtemp(
                prefix='mmfunmatch_bench_'))
    print(format_report(report))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
