"""Exporting the student as a plain MMPretrain model
(mmfunmatch/apis/export.py): the weights load with weights_only=True into
the model the exported config builds and give the distiller's student's
logits bit for bit; the eval view becomes MMPretrain's own transforms; a
file or config that cannot be exported says why. tools/export_student.py
on a trained run, read back without mmfunmatch: tests/tools/
test_train_e2e.py (slow)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from mmfunmatch.apis.export import export_student, student_config
from tests.helpers import FUNMATCH


def _demo_cfg() -> Config:
    cfg = Config.fromfile(FUNMATCH)
    cfg.model.teachers[0].checkpoint = None
    return cfg


@pytest.fixture
def run_checkpoint(tmp_path):
    """A distiller checkpoint as a run writes it (state dict, the config's
    text and the data set's classes in meta) and its distiller."""
    cfg = _demo_cfg()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    path = str(tmp_path / 'epoch_3.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(cfg=cfg.pretty_text, epoch=3,
                              dataset_meta=dict(classes=tuple('0123456789'),
                                                num_images=100))), path)
    return path, model.eval()


def test_exported_student_is_the_plain_student(run_checkpoint, tmp_path):
    ckpt, distiller = run_checkpoint
    weights, cfg_path = export_student(ckpt, str(tmp_path / 'out'))
    assert (weights, cfg_path) == (str(tmp_path / 'out' / 'student.pth'),
                                   str(tmp_path / 'out' /
                                       'student_config.py'))
    saved = torch.load(weights, weights_only=True)  # plain tensors only
    assert saved['meta'] == dict(
        dataset_meta=dict(classes=list('0123456789'), num_images=100),
        exported_from='epoch_3.pth')
    assert set(saved['state_dict']) == set(distiller.student.state_dict())

    cfg = Config.fromfile(cfg_path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.type == 'ImageClassifier' and 'init_cfg' not in cfg.model
    assert cfg.model.data_preprocessor == dict(
        type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
        to_rgb=True)
    # The demo's eval view (16 px, crop_frac 1) as MMPretrain transforms.
    assert cfg.test_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=16, edge='short', backend='cv2',
             interpolation='bilinear'),
        dict(type='CenterCrop', crop_size=16),
        dict(type='PackInputs')
    ]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        plain = MODELS.build(cfg.model)
    plain.load_state_dict(saved['state_dict'], strict=True)
    plain.eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain(x, mode='tensor'),
                           distiller.student(x, mode='tensor'))


def test_an_explicit_config_replaces_the_stored_one(run_checkpoint,
                                                    tmp_path):
    ckpt, _ = run_checkpoint
    data = torch.load(ckpt, weights_only=False)
    del data['meta']['cfg']
    torch.save(data, ckpt)
    with pytest.raises(ValueError, match='stores no config; pass --config'):
        export_student(ckpt, str(tmp_path / 'out'))
    _, cfg_path = export_student(ckpt, str(tmp_path / 'out'), FUNMATCH)
    assert osp.isfile(cfg_path)


def test_what_cannot_be_exported_says_why(tmp_path):
    path = str(tmp_path / 'plain.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(1))), path)
    with pytest.raises(ValueError, match='holds no student weights'):
        export_student(path, str(tmp_path / 'out'), FUNMATCH)

    cfg = _demo_cfg()
    cfg.model = cfg.model.student
    with pytest.raises(ValueError, match='model type is ImageClassifier, not '
                       'FunMatchDistiller; nothing to export'):
        student_config(cfg)

    cfg = _demo_cfg()
    cfg.test_dataloader.dataset.pipeline[1].mode = 'same/ic'
    with pytest.raises(ValueError,
                       match="must use ConsistentView mode='eval'"):
        student_config(cfg)


def test_srd_projector_is_checkpointed_but_not_exported(tmp_path):
    """A FunMatchDistiller with SRD's feature loss: the projector and its
    teacher normalisation are in the run's checkpoint, not in the export,
    which still holds exactly the student."""
    cfg = _demo_cfg()
    cfg.model.feature_loss = dict(type='SRDLoss')
    model = MODELS.build(cfg.model)
    state = model.state_dict()
    assert 'feature_loss.projectors.0.weight' in state
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=state, meta=dict(cfg=cfg.pretty_text)), path)
    weights, _ = export_student(path, str(tmp_path / 'out'))
    saved = torch.load(weights, weights_only=True)['state_dict']
    assert set(saved) == set(model.student.state_dict())
