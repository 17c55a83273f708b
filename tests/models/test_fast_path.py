"""The teacher's fast path (bf16 autocast + channels_last + inference_mode)
keeps a trained teacher's outputs within what bf16 rounding can move them,
and a broken fast path fails the same check."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from mmfunmatch.models.fast_path import (fast_path_fidelity,
                                         fast_path_violations,
                                         rounding_error_bound)
from tests.conftest import REPO

# Trains the demo teacher through the runner (about 40 s on two CPU cores).
pytestmark = pytest.mark.slow
DEMO = osp.join(REPO, 'configs', 'funmatch', 'demo')


@pytest.fixture(scope='module')
def teacher_checkpoint(digits_root, tmp_path_factory):
    """The demo teacher trained for 4 epochs through the runner."""
    work_dir = str(tmp_path_factory.mktemp('fast_path_teacher'))
    cfg = Config.fromfile(osp.join(DEMO, 'digits_teacher.py'))
    cfg.merge_from_dict({
        'work_dir': work_dir,
        'log_level': 'WARNING',
        'train_cfg.max_epochs': 4,
        'param_scheduler.0.end': 1,
        'param_scheduler.1.begin': 1,
        'param_scheduler.1.end': 4,
        'default_hooks.checkpoint.interval': 4,
        'train_dataloader.dataset.data_root': digits_root,
        'train_dataloader.num_workers': 1,
    })
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    Runner.from_cfg(cfg).train()
    return osp.join(work_dir, 'epoch_4.pth')


def build_distiller(checkpoint, **fast_path):
    cfg = Config.fromfile(osp.join(DEMO, 'digits_funmatch_student.py'))
    cfg.model.teachers[0].checkpoint = checkpoint
    cfg.model.update(fast_path)
    return cfg, MODELS.build(cfg.model)


def val_teacher_logits(cfg, distiller, digits_root):
    """The teacher's logits on every val image through the distiller's own
    teacher path, and the labels."""
    loader_cfg = cfg.val_dataloader
    loader_cfg.dataset.data_root = digits_root
    loader_cfg.num_workers = 0
    loader_cfg.persistent_workers = False
    loader = Runner.build_dataloader(loader_cfg)
    logits, labels = [], []
    for batch in loader:
        data = distiller.data_preprocessor(batch, False)
        logits.append(distiller.teacher_logits(data['inputs']['teachers'])[0])
        labels.append(torch.cat([s.gt_label for s in data['data_samples']]))
    return torch.cat(logits), torch.cat(labels)


@pytest.fixture(scope='module')
def reference(digits_root, teacher_checkpoint):
    """fp32 teacher logits on the val images, and the labels."""
    cfg, distiller = build_distiller(teacher_checkpoint)
    return val_teacher_logits(cfg, distiller, digits_root)


def fast_logits(digits_root, checkpoint, breakage=None):
    """The fast path's logits; ``breakage`` wraps the teacher's forward in
    a deliberately wrong version of the path."""
    cfg, distiller = build_distiller(checkpoint, teacher_dtype='bf16',
                                     channels_last=True)
    real = distiller._teacher_fns[0]
    mean = distiller.data_preprocessor.teacher_mean_0
    std = distiller.data_preprocessor.teacher_std_0

    def nhwc_read_as_nchw(x, mode):
        # The channels-last buffer reinterpreted as if it were NCHW.
        return real(x.permute(0, 2, 3, 1).reshape(x.shape), mode=mode)

    def unnormalised(x, mode):
        # The teacher's mean/std dropped: raw 0-255 pixels.
        return real(x * std + mean, mode=mode)

    def fp16_overflow(x, mode):
        # fp16 instead of bf16, on activations past fp16's 65504.
        with torch.autocast('cpu', dtype=torch.float16):
            return real(x * 1e5, mode=mode)

    broken = dict(memory_format=nhwc_read_as_nchw,
                  normalisation=unnormalised, fp16_overflow=fp16_overflow)
    if breakage is not None:
        distiller._teacher_fns[0] = broken[breakage]
    return distiller, val_teacher_logits(cfg, distiller, digits_root)[0]


def test_fast_path_stays_within_bf16_rounding(digits_root,
                                              teacher_checkpoint, reference):
    ref, labels = reference
    model, fast = fast_logits(digits_root, teacher_checkpoint)
    # The fast path really ran: channels-last weights, bf16 rounding.
    conv = next(m for m in model.teachers[0].modules()
                if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.dtype == torch.float32
    fidelity = fast_path_fidelity(ref, fast)
    assert fidelity['max_abs_dlogit'] > 0
    # A trained teacher (far above the 10 % of chance), so that the
    # confident-sample check below has samples to check.
    assert (ref.argmax(1) == labels).float().mean() > 0.5

    rel_bound = rounding_error_bound(model.teachers[0], torch.bfloat16)
    scale = ref.abs().max().item()
    print(f'\nfast path vs fp32 teacher on {len(labels)} digits val images: '
          f'top-1 agreement {100 * fidelity["top1_agreement"]:.2f} %, '
          f'max |delta logit| {fidelity["max_abs_dlogit"]:.2e} = '
          f'{fidelity["max_abs_dlogit"] / scale:.2e} x max |logit| '
          f'(bound {rel_bound:.3f}), max |delta p| '
          f'{fidelity["max_abs_dp"]:.2e}')
    assert fast_path_violations(ref, fast, rel_bound) == []


@pytest.mark.parametrize('breakage',
                         ['memory_format', 'normalisation', 'fp16_overflow'])
def test_a_broken_fast_path_fails_the_check(digits_root, teacher_checkpoint,
                                            reference, breakage):
    ref, _ = reference
    model, fast = fast_logits(digits_root, teacher_checkpoint, breakage)
    rel_bound = rounding_error_bound(model.teachers[0], torch.bfloat16)
    problems = fast_path_violations(ref, fast, rel_bound)
    print(f'\n{breakage}: {problems}')
    assert problems


def test_bound_counts_layers_and_format():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.LazyLinear(2))
    assert rounding_error_bound(net, torch.bfloat16) == 2 * 2 * 2.0**-8
    assert rounding_error_bound(net, torch.float16) == 2 * 2 * 2.0**-11


def test_violations_on_hand_made_logits():
    ref = torch.tensor([[10.0, 0.0, -1.0], [0.10, 0.0, 0.0]])
    # Within 1 % of the scale 10: fine, even the near-tie's flip.
    ok = ref + torch.tensor([[0.05, -0.05, 0.0], [-0.06, 0.05, 0.0]])
    assert fast_path_violations(ref, ok, 0.01) == []
    # A confident sample's top-1 moved (and the error is past the bound).
    bad = ref.clone()
    bad[0, 1] = 11.0
    problems = fast_path_violations(ref, bad, 0.01)
    assert len(problems) == 2 and 'changed top-1' in problems[1]
    nan = ref.clone()
    nan[1, 2] = float('nan')
    assert 'non-finite' in fast_path_violations(ref, nan, 0.01)[0]
