"""Loading weight files safely: every supported kind gives the source model's
logits back, unsafe or mismatched files fail with a message that says why.

Each file is written here from a randomly initialised small model of the same
family (nothing is downloaded)."""
import os
import pickle
import shlex
from functools import partial

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import Runner
from safetensors.torch import save_file
from timm.layers import GroupNormAct, StdConv2d
from timm.models import register_model
from timm.models.resnetv2 import ResNetV2

import mmfunmatch  # noqa: F401  (registers the distiller and the loss)
from mmfunmatch.apis.cli import train_config
from mmfunmatch.models.bit import find_resnetv2, load_bit_npz, save_bit_npz
from mmfunmatch.models.weights import load_weights
from mmpretrain.registry import MODELS
from tests.conftest import REPO
from tests.helpers import FUNMATCH, image_folder, tiny_cfg

R50X1_CFG = os.path.join(REPO, 'configs/_base_/models/bit_r50x1_student.py')

# A small pre-activation BiT ResNetV2 (0.5 M params): the layout of
# resnetv2_*_bit (fixed stem, StdConv2d eps 1e-8, GroupNorm) at a quarter of
# the width, GroupNorm of 8 groups to fit, and one stage of two units, so
# unit numbering and projection-free units are used.
SMALL_LAYERS = (1, 2, 1, 1)


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (not ones/zeros), so a swapped or skipped tensor
    changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def _small_resnetv2(layers=SMALL_LAYERS, num_classes=10) -> ResNetV2:
    return ResNetV2(
        layers=list(layers),
        channels=(64, 128, 256, 512),
        stem_chs=16,
        num_classes=num_classes,
        stem_type='fixed',
        conv_layer=partial(StdConv2d, eps=1e-8),
        norm_layer=partial(GroupNormAct, num_groups=8))


def small_bit(layers=SMALL_LAYERS, num_classes=10, seed=0) -> ResNetV2:
    return randomise(_small_resnetv2(layers, num_classes), seed)


@register_model
def mmfunmatch_test_small_bit(pretrained=False, num_classes=10, **kwargs):
    """The small BiT net under a timm name, so mmpretrain's TimmClassifier
    can build it."""
    assert not pretrained
    return _small_resnetv2(num_classes=num_classes)


def small_timm_classifier(seed):
    return randomise(MODELS.build(dict(
        type='TimmClassifier', model_name='mmfunmatch_test_small_bit',
        pretrained=False, num_classes=10)), seed)


def small_mmpretrain(seed=0, num_classes=10):
    """A ResNet-18 of width 16 with GN + WS: the family of resnet50_gn_ws."""
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(
            type='ResNet', depth=18, stem_channels=16, base_channels=16,
            conv_cfg=dict(type='ConvWS'),
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=128))
    return cfg, randomise(MODELS.build(cfg), seed)


def r50x1_classifier(seed):
    model = MODELS.build(Config.fromfile(R50X1_CFG).model)
    return randomise(model, seed)


@pytest.fixture(scope='module')
def x():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 32, 32, generator=g)


def logits(model, x):
    """The comparisons below are bitwise: loading copies into the existing
    parameters (same dtype, same strides), so source and destination run the
    same kernels on the same numbers in this process, on any CPU."""
    with torch.no_grad():
        return model(x)


# -- (a) timm / PyTorch state dicts ------------------------------------------
@pytest.mark.parametrize('ext', ['.pth', '.safetensors'])
def test_timm_state_dict_file(tmp_path, x, ext):
    src = small_bit(seed=0)
    path = str(tmp_path / f'w{ext}')
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    if ext == '.safetensors':
        save_file(state, path)
    else:
        torch.save(state, path)
    dst = small_bit(seed=1)
    assert not torch.equal(logits(dst, x), logits(src, x))
    load_weights(dst, path)
    assert torch.equal(logits(dst, x), logits(src, x))


# -- (b) big_vision / BiT .npz -----------------------------------------------
@pytest.mark.parametrize('layout,root', [('big_vision', ''),
                                         ('big_vision', 'params/'),
                                         ('bit', '')])
def test_bit_npz_roundtrip(tmp_path, x, layout, root):
    src = small_bit(seed=0)
    path = str(tmp_path / 'w.npz')
    save_bit_npz(src, path, layout=layout, root=root)
    dst = small_bit(seed=1)
    load_weights(dst, path)  # dispatches .npz to load_bit_npz
    assert torch.equal(logits(dst, x), logits(src, x))


def test_big_vision_npz_names_and_shapes(tmp_path):
    """The names and layouts of big_vision's models/bit_paper.py tree."""
    arrays = save_bit_npz(small_bit(), str(tmp_path / 'w.npz'))
    assert arrays['root_block/conv_root/kernel'].shape == (7, 7, 3, 16)
    assert arrays['block1/unit01/gn1/scale'].shape == (1, 1, 1, 16)
    assert arrays['block1/unit01/conv2/kernel'].shape == (3, 3, 16, 16)
    assert arrays['block2/unit01/conv_proj/kernel'].shape == (1, 1, 64, 128)
    assert 'block2/unit02/conv_proj/kernel' not in arrays
    assert arrays['norm-pre-head/bias'].shape == (1, 1, 1, 512)
    assert arrays['head/kernel'].shape == (512, 10)
    assert arrays['head/bias'].shape == (10, )


def test_bit_layout_agrees_with_timm_loader(tmp_path, x):
    """Our writer of the original BiT layout and timm's own reader of it
    (written independently) agree tensor for tensor."""
    src = small_bit(seed=0)
    path = str(tmp_path / 'w.npz')
    save_bit_npz(src, path, layout='bit')
    dst = small_bit(seed=1)
    dst.load_pretrained(path)
    assert torch.equal(logits(dst, x), logits(src, x))


def test_bit_npz_into_timm_classifier(tmp_path, x):
    """The real student architecture (25.5 M), wrapped by mmpretrain and
    built from its config."""
    src = r50x1_classifier(seed=0)
    path = str(tmp_path / 'R50x1.npz')
    save_bit_npz(src, path)
    dst = r50x1_classifier(seed=1)
    load_weights(dst, path)
    assert torch.equal(logits(dst, x), logits(src, x))


def test_bit_npz_bfloat16(tmp_path, x):
    """bfloat16 arrays (stored by numpy as 2-byte void records)."""
    src = small_bit(seed=0)
    arrays = save_bit_npz(src, str(tmp_path / 'f32.npz'))
    bf16 = {
        k: torch.from_numpy(a).to(torch.bfloat16).view(torch.int16).numpy()
        .view('V2')
        for k, a in arrays.items()
    }
    path = str(tmp_path / 'bf16.npz')
    np.savez(path, **bf16)
    dst = small_bit(seed=1)
    load_bit_npz(dst, path)
    for (name, a), b in zip(src.state_dict().items(),
                            dst.state_dict().values()):
        assert torch.equal(a.to(torch.bfloat16).float(), b), name


def test_bit_npz_headless_model(tmp_path, x):
    src = small_bit(seed=0)
    path = str(tmp_path / 'w.npz')
    save_bit_npz(src, path)
    dst = small_bit(num_classes=0, seed=1)
    load_bit_npz(dst, path)
    assert torch.equal(dst.forward_features(x), src.forward_features(x))


# -- (c) MMPretrain checkpoints ----------------------------------------------
def test_mmpretrain_checkpoint(tmp_path, x):
    cfg, src = small_mmpretrain(seed=0)
    path = str(tmp_path / 'epoch_1.pth')
    state = src.state_dict()
    assert any(k.startswith('backbone.') for k in state)
    torch.save(dict(meta=dict(epoch=1, iter=10, mmpretrain_version='1.2.0',
                              dataset_meta=dict(classes=list('abcdefghij'))),
                    state_dict=state), path)
    dst = randomise(MODELS.build(cfg), seed=1)
    load_weights(dst, path)
    assert torch.equal(logits(dst, x), logits(src, x))


@pytest.mark.parametrize('target', ['timm', 'TimmClassifier'])
def test_mmpretrain_timm_classifier_checkpoint(tmp_path, x, target):
    """TimmClassifier weights under 'model.' go into a bare timm model or a
    TimmClassifier alike."""
    src = small_timm_classifier(seed=0)
    path = str(tmp_path / 'epoch_1.pth')
    state = {'model.' + k: v for k, v in src.model.state_dict().items()}
    torch.save(dict(meta=dict(epoch=1), state_dict=state), path)
    dst = small_timm_classifier(seed=1)
    load_weights(dst.model if target == 'timm' else dst, path)
    assert torch.equal(logits(dst, x), logits(src, x))


# -- (d) mmfunmatch's own checkpoints ----------------------------------------
def test_mmfunmatch_runner_checkpoint(tmp_path, x):
    """A checkpoint as mmengine's runner writes it for FunMatchDistiller:
    student under 'student.', a message hub with HistoryBuffers, optimizer
    state. The student comes back out of it."""
    cfg, _ = small_mmpretrain()
    distiller = MODELS.build(
        dict(type='FunMatchDistiller', student=cfg,
             teachers=[dict(model=cfg, checkpoint=None)]))
    randomise(distiller.student, seed=0)
    opt = torch.optim.AdamW(distiller.student.parameters(), lr=1e-3)
    distiller.student(x).sum().backward()
    opt.step()
    distiller.eval()

    hub = MessageHub.get_instance('test_mmfunmatch_runner_checkpoint')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 1)
    hub_state = hub.state_dict()
    assert isinstance(hub_state['log_scalars']['train/loss'], HistoryBuffer)
    state = distiller.state_dict()
    assert any(k.startswith('student.') for k in state)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1, iter=1, seed=0, experiment_name='t',
                              mmengine_version='0.10.7'),
                    state_dict=state, message_hub=hub_state,
                    optimizer=opt.state_dict(),
                    param_schedulers=[dict(last_epoch=1, base_lrs=[1e-3])]),
               path)
    # The file really needs the allowlist: plain weights_only refuses it.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    _, dst = small_mmpretrain(seed=1)
    load_weights(dst, path)
    assert torch.equal(logits(dst, x), logits(distiller.student, x))


# -- unsafe files ----------------------------------------------------------
class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {shlex.quote(self.marker)}', )


def test_malicious_pickle_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    _, src = small_mmpretrain()
    torch.save(dict(state_dict=src.state_dict(),
                    meta=dict(note=_Payload(str(marker)))), path)
    _, dst = small_mmpretrain(seed=1)
    with pytest.raises(RuntimeError, match='refusing to load'):
        load_weights(dst, path)
    assert not marker.exists()
    # The payload is live: a full unpickle does run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.slow
def test_pickle_payloads_are_refused_as_teacher_and_on_resume(tmp_path,
                                                               digits_root):
    """Through the runner: a payload as the teacher's weight file, and one
    slipped into a real checkpoint that a run resumes from."""
    marker = str(tmp_path / 'pwned')
    evil_teacher = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(1)), x=_Payload(marker)),
               evil_teacher)
    cfg = train_config([
        FUNMATCH, '--work-dir', str(tmp_path / 'fm'), '--cfg-options',
        f'model.teachers.0.checkpoint={evil_teacher}',
        f'train_dataloader.dataset.data_root={digits_root}',
        f'val_dataloader.dataset.data_root={digits_root}',
        f'test_dataloader.dataset.data_root={digits_root}'
    ])
    with pytest.raises(RuntimeError, match='refusing to load'):
        Runner.from_cfg(cfg)
    assert not os.path.exists(marker)

    # Resume: a real checkpoint, then the same with a payload slipped in.
    root = image_folder(str(tmp_path / 'data'))
    work = str(tmp_path / 'work')
    cfg = tiny_cfg(work, root, 'resume_clean')
    cfg.train_cfg.max_epochs = 1
    Runner.from_cfg(cfg).train()
    ckpt = os.path.join(work, 'epoch_1.pth')
    cfg = tiny_cfg(work, root, 'resume_clean_2')
    cfg.update(resume=True, load_from=ckpt)
    resumed = Runner.from_cfg(cfg)
    resumed.train()  # the project's own checkpoints load (allowlist)
    assert resumed.iter == 8
    data = torch.load(ckpt, weights_only=False)
    data['meta']['note'] = _Payload(marker)
    torch.save(data, ckpt)
    cfg = tiny_cfg(work, root, 'resume_evil')
    cfg.update(resume=True, load_from=ckpt)
    with pytest.raises(RuntimeError, match='refusing to load'):
        Runner.from_cfg(cfg).train()
    assert not os.path.exists(marker)


def test_npz_with_pickled_object_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.npz')
    arrays = save_bit_npz(small_bit(), str(tmp_path / 'ok.npz'))
    arrays['block1/unit01/conv1/kernel'] = np.array(
        [_Payload(str(marker))], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(RuntimeError, match='refusing to load.*pickled'):
        load_weights(small_bit(), path)
    assert not marker.exists()
    with np.load(path, allow_pickle=True) as npz:
        npz['block1/unit01/conv1/kernel']
    assert marker.exists()


# -- clear errors ----------------------------------------------------------
@pytest.mark.parametrize('ext', ['.pth', '.safetensors', '.npz'])
def test_missing_file(tmp_path, ext):
    path = str(tmp_path / f'nowhere{ext}')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        load_weights(small_bit(), path)


def test_mismatched_keys_named(tmp_path):
    src = small_bit(layers=(1, 1, 1, 1))
    state = dict(src.state_dict(), **{'extra.weight': torch.zeros(3)})
    path = str(tmp_path / 'w.safetensors')
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    dst = small_bit(layers=SMALL_LAYERS)
    first_missing = next(k for k in dst.state_dict() if k not in state)
    assert first_missing.startswith('stages.1.blocks.1.')
    with pytest.raises(RuntimeError) as err:
        load_weights(dst, path)
    assert first_missing in str(err.value)
    assert 'extra.weight' in str(err.value)


def test_wrong_shape_named(tmp_path):
    path = str(tmp_path / 'w.pth')
    torch.save(small_bit(num_classes=10).state_dict(), path)
    with pytest.raises(RuntimeError, match=r'head\.fc\.weight.*\(10, 512'):
        load_weights(small_bit(num_classes=5), path)


def test_npz_missing_key_named(tmp_path):
    arrays = save_bit_npz(small_bit(), str(tmp_path / 'full.npz'))
    del arrays['block2/unit02/gn3/bias']
    path = str(tmp_path / 'w.npz')
    np.savez(path, **arrays)
    with pytest.raises(RuntimeError) as err:
        load_bit_npz(small_bit(), path)
    msg = str(err.value)
    assert "'block2/unit02/gn3/bias'" in msg
    assert 'stages.1.blocks.1.norm3.bias' in msg
    assert 'model_name' in msg  # the fix


def test_npz_shallower_model_refused(tmp_path):
    """A deeper file does not half-load into a shallower model."""
    path = str(tmp_path / 'w.npz')
    save_bit_npz(small_bit(layers=SMALL_LAYERS), path, layout='bit')
    with pytest.raises(RuntimeError,
                       match="does not have, first: 'resnet/block2/unit02/"):
        load_bit_npz(small_bit(layers=(1, 1, 1, 1)), path)


def test_npz_wrong_class_count_named(tmp_path):
    """timm's own loader keeps a random head here; we refuse."""
    path = str(tmp_path / 'w.npz')
    save_bit_npz(small_bit(num_classes=10), path)
    with pytest.raises(RuntimeError, match="'head/kernel'.*num_classes=10"):
        load_bit_npz(small_bit(num_classes=5), path)


def test_npz_not_bit_model(tmp_path):
    path = str(tmp_path / 'w.npz')
    save_bit_npz(small_bit(), path)
    _, other = small_mmpretrain()
    with pytest.raises(TypeError, match='ResNetV2'):
        load_weights(other, path)
    with pytest.raises(TypeError):
        find_resnetv2(torch.nn.Linear(2, 2))


def test_npz_unknown_layout(tmp_path):
    path = str(tmp_path / 'w.npz')
    np.savez(path, **{'encoder/kernel': np.zeros((2, 2), np.float32)})
    with pytest.raises(RuntimeError, match='not a BiT/big_vision'):
        load_bit_npz(small_bit(), path)
