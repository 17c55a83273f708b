"""Teacher specs: a list or a dict of named teachers, merged by name under
config inheritance, read by the distiller and the config check alike."""
import pytest
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mmfunmatch.apis import ConfigError, validate_config
from mmfunmatch.models.teacher_spec import teacher_specs
from tests.conftest import tiny_classifier

BASE = '''
model = dict(
    type='FunMatchDistiller',
    student=dict(type='ImageClassifier',
                 backbone=dict(type='ResNet_CIFAR', depth=18,
                               base_channels=4),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=10,
                           in_channels=32)),
    teachers=dict(bit=dict(
        model=dict(type='ImageClassifier',
                   backbone=dict(type='ResNet_CIFAR', depth=18,
                                 base_channels=8),
                   neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='LinearClsHead', num_classes=10,
                             in_channels=64)),
        checkpoint=None, mean=[127.5] * 3, std=[127.5] * 3, size=16)))
'''
CHILD = '''
_base_ = ['./base.py']
# One field of the base's teacher, and a second teacher for an ensemble.
model = dict(teachers=dict(
    bit=dict(size=24),
    big=dict(model={{_base_.model.teachers.bit.model}}, checkpoint=None,
             mean=[0.0] * 3, std=[255.0] * 3, size=32)))
'''


def test_a_derived_config_changes_and_adds_teachers_by_name(tmp_path):
    (tmp_path / 'base.py').write_text(BASE)
    (tmp_path / 'child.py').write_text(CHILD)
    cfg = Config.fromfile(str(tmp_path / 'child.py'))
    specs = teacher_specs(cfg.model.teachers)
    assert [s.key for s in specs] == ['model.teachers.bit',
                                      'model.teachers.big']
    assert [s.size for s in specs] == [24, 32]
    assert specs[0].mean == [127.5] * 3  # kept from the base
    model = MODELS.build(cfg.model)
    pre = model.data_preprocessor
    assert model.teacher_keys == ['model.teachers.bit', 'model.teachers.big']
    assert pre.teacher_std_1.flatten().tolist() == [255.0] * 3
    # --cfg-options reaches a teacher by its name.
    cfg.merge_from_dict({'model.teachers.big.checkpoint': 'missing.pth'})
    with pytest.raises(ConfigError,
                       match=r"model\.teachers\.big: checkpoint 'missing"):
        validate_config(cfg)


def test_list_form_keys_and_bad_specs():
    specs = teacher_specs([dict(model=tiny_classifier(8), size=16)])
    assert specs[0].key == 'model.teachers.0'
    assert specs[0].view == dict(size=16)
    with pytest.raises(ValueError, match=r'model\.teachers\.1 needs a'):
        teacher_specs([dict(model=tiny_classifier(8)), dict(size=3)])
    with pytest.raises(ValueError, match=r"unknown keys \['sise'\]"):
        teacher_specs(dict(t=dict(model=tiny_classifier(8), sise=16)))
