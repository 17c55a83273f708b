"""The teacher's fast path (bf16 autocast + channels_last + inference_mode)
keeps a trained teacher's predictions on the digits val set."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from mmfunmatch.apis.benchmark import fast_path_fidelity
from tests.conftest import REPO

# Trains the demo teacher through the runner (about 40 s on two CPU cores).
pytestmark = pytest.mark.slow
DEMO = osp.join(REPO, 'configs', 'funmatch', 'demo')
# Stated tolerances of the fast path against the fp32 teacher.
MIN_TOP1_AGREEMENT = 0.999
MAX_ABS_DP = 0.05


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


def val_teacher_logits(digits_root, checkpoint, **fast_path):
    """The teacher's logits on every val image through the distiller's own
    teacher path, and the labels."""
    cfg = Config.fromfile(osp.join(DEMO, 'digits_funmatch_student.py'))
    cfg.model.teachers[0].checkpoint = checkpoint
    cfg.model.update(fast_path)
    distiller = MODELS.build(cfg.model)
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
    return distiller, torch.cat(logits), torch.cat(labels)


def test_fast_path_keeps_the_teachers_predictions(digits_root,
                                                  teacher_checkpoint):
    _, ref, labels = val_teacher_logits(digits_root, teacher_checkpoint)
    fast_model, fast, _ = val_teacher_logits(
        digits_root, teacher_checkpoint, teacher_dtype='bf16',
        channels_last=True)
    # The fast path really ran: channels-last weights, bf16 rounding.
    conv = next(m for m in fast_model.teachers[0].modules()
                if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.dtype == torch.float32

    fidelity = fast_path_fidelity(ref, fast)
    print(f'\nfast path vs fp32 teacher on {len(labels)} digits val images: '
          f'top-1 agreement {100 * fidelity["top1_agreement"]:.2f} %, '
          f'max |delta p| {fidelity["max_abs_dp"]:.2e}, '
          f'max |delta logit| {fidelity["max_abs_dlogit"]:.2e}')
    assert fidelity['max_abs_dlogit'] > 0
    # A trained teacher, so that agreement means something.
    assert (ref.argmax(1) == labels).float().mean() > 0.8
    assert fidelity['top1_agreement'] >= MIN_TOP1_AGREEMENT
    assert fidelity['max_abs_dp'] <= MAX_ABS_DP
