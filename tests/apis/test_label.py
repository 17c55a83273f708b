"""tools/label_teacher.py's config: the training config with the labelling
loop, its settings from the config's replay_label or the flags, and the
training-only hooks removed."""
import pytest

from mmfunmatch.apis.label import label_config
from mmfunmatch.apis.validate import ConfigError
from tests.helpers import FUNMATCH


def args(tmp_path, digits_root, *extra):
    teacher = tmp_path / 'teacher.pth'
    teacher.write_bytes(b'x')
    return [FUNMATCH, str(tmp_path / 'store'), *extra, '--cfg-options',
            f'model.teachers.0.checkpoint={teacher}',
            f'train_dataloader.dataset.data_root={digits_root}',
            f'val_dataloader.dataset.data_root={digits_root}',
            f'test_dataloader.dataset.data_root={digits_root}']


def test_the_training_config_with_the_labelling_loop(tmp_path, digits_root):
    cfg = label_config(args(tmp_path, digits_root))
    assert cfg.train_cfg == dict(type='TeacherLabelLoop', max_epochs=250,
                                 store=str(tmp_path / 'store'),
                                 precision='fp32', topk=None)
    assert cfg.work_dir == str(tmp_path / 'store' / 'logs')
    assert cfg.param_scheduler is None
    assert cfg.default_hooks['checkpoint'] is None
    for hook in ('preemption', 'rank_check', 'nonfinite'):
        assert hook not in cfg.default_hooks
    assert cfg.default_hooks['exact_resume'].type == 'ExactResumeHook'


def test_replay_label_in_the_config_and_flags_over_it(tmp_path, digits_root):
    a = args(tmp_path, digits_root)
    cfg = label_config(a + ['replay_label.precision=topk',
                            'replay_label.topk=3', 'replay_label.epochs=50'])
    assert (cfg.train_cfg.max_epochs, cfg.train_cfg.precision,
            cfg.train_cfg.topk) == (50, 'topk', 3)
    b = args(tmp_path, digits_root, '--epochs', '7', '--precision', 'fp16')
    cfg = label_config(b + ['replay_label.precision=topk',
                            'replay_label.topk=3'])
    assert (cfg.train_cfg.max_epochs, cfg.train_cfg.precision) == (7, 'fp16')
    with pytest.raises(ConfigError, match=r"unknown keys \['k'\]"):
        label_config(a + ['replay_label.k=3'])


def test_a_teacher_without_weights_is_refused(tmp_path, digits_root):
    a = args(tmp_path, digits_root) + ['model.teachers.0.checkpoint=None']
    with pytest.raises(ConfigError, match='checkpoint is not set'):
        label_config(a)
