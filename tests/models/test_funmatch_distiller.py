import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import get_state_dict, load_state_dict
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmfunmatch.models.algorithms import combine_teachers
from tests.conftest import tiny_classifier

MEAN, STD = [127.5] * 3, [127.5] * 3


def distiller_cfg(n_teachers=1, **kwargs):
    cfg = dict(
        type='FunMatchDistiller',
        student=tiny_classifier(4),
        teachers=[
            dict(model=tiny_classifier(8), checkpoint=None, mean=MEAN,
                 std=STD, size=16) for _ in range(n_teachers)
        ],
        data_preprocessor=dict(
            type='FunMatchDataPreprocessor', mean=[100.] * 3, std=[50.] * 3,
            batch_augments=dict(type='UniformMixup', seed=0)),
    )
    cfg.update(kwargs)
    return cfg


def batch(n=4, student=12, teacher=16, labels=True):
    torch.manual_seed(0)
    samples = [DataSample().set_gt_label(i % 10) if labels else DataSample()
               for i in range(n)]
    return dict(
        inputs=dict(
            student=torch.randint(0, 256, (n, 3, student, student),
                                  dtype=torch.uint8),
            teachers=[torch.randint(0, 256, (n, 3, teacher, teacher),
                                    dtype=torch.uint8)]),
        data_samples=samples)


def optim_wrapper(model):
    return build_optim_wrapper(model, dict(
        constructor='FunMatchOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.1)))


def test_teachers_stay_frozen_through_training():
    model = MODELS.build(distiller_cfg())
    model.init_weights()
    before = {k: v.clone() for k, v in model.teachers.state_dict().items()}
    student_before = copy.deepcopy(model.student.state_dict())
    wrapper = optim_wrapper(model)
    optimised = {id(p) for g in wrapper.optimizer.param_groups
                 for p in g['params']}
    assert not optimised & {id(p) for p in model.teachers.parameters()}
    assert optimised == {id(p) for p in model.student.parameters()}
    model.train()
    for _ in range(3):
        model.train_step(batch(), wrapper)
    assert not model.teachers.training
    assert all(not m.training for m in model.teachers.modules())
    for k, v in model.teachers.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN statistics included
    for p in model.teachers.parameters():
        assert p.grad is None and not p.requires_grad
    changed = [not torch.equal(v, student_before[k])
               for k, v in model.student.state_dict().items()]
    assert any(changed)


def test_checkpoints_hold_no_teacher_and_load_back():
    model = MODELS.build(distiller_cfg())
    for state in (model.state_dict(), get_state_dict(model)):
        assert state and not any(k.startswith('teachers.') for k in state)
        assert any(k.startswith('student.') for k in state)
    other = MODELS.build(distiller_cfg())
    result = other.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys
    load_state_dict(other, get_state_dict(model), strict=True)
    for a, b in zip(model.student.parameters(), other.student.parameters()):
        assert torch.equal(a, b)


def test_loss_is_kl_to_the_teacher_on_the_same_mixed_views():
    model = MODELS.build(distiller_cfg())
    model.train()
    data = model.data_preprocessor(batch(), training=True)
    losses = model(**data, mode='loss')
    s = model.student(data['inputs']['student'], mode='tensor')
    t = model.teachers[0](data['inputs']['teachers'][0], mode='tensor')
    ps, pt = s.log_softmax(1), t.log_softmax(1)
    expected = (pt.exp() * (pt - ps)).sum(1).mean()
    # The loss's own float32 operations, in its order, on logits recomputed
    # from the same views by the same models: bit-equal on any CPU.
    assert losses['loss_distill'].item() == pytest.approx(expected.item(),
                                                          rel=1e-5)
    assert {'student_entropy', 'teacher_entropy', 'label_ce'} <= set(losses)


def test_preprocessor_normalises_each_view_with_its_own_statistics():
    model = MODELS.build(distiller_cfg())
    data = batch()
    out = model.data_preprocessor(data, training=False)
    raw_s = data['inputs']['student'].float().flip(1)  # BGR -> RGB
    raw_t = data['inputs']['teachers'][0].float().flip(1)
    # (x - mean) / std in float32 either way: a rounding or two apart.
    assert torch.allclose(out['inputs']['student'], (raw_s - 100) / 50)
    assert torch.allclose(out['inputs']['teachers'][0], (raw_t - 127.5) / 127.5)


def test_training_without_labels():
    model = MODELS.build(distiller_cfg())
    model.train()
    losses = model.train_step(batch(labels=False), optim_wrapper(model))
    assert 'label_ce' not in losses and torch.isfinite(losses['loss'])


def test_predict_reports_the_student_and_caches_teacher_logits():
    model = MODELS.build(distiller_cfg())
    model.eval()
    data = batch()
    for i, s in enumerate(data['data_samples']):
        s.set_metainfo(dict(img_path=f'img{i}.png', sample_idx=i))
    calls = []
    handle = model.teachers[0].register_forward_hook(
        lambda *args: calls.append(1))
    first = model.val_step(copy.deepcopy(data))
    second = model.val_step(copy.deepcopy(data))
    handle.remove()
    assert len(calls) == 1  # teacher ran once for the two evaluations
    for a, b in zip(first, second):
        assert torch.equal(a.teacher_logits, b.teacher_logits)
        assert a.pred_score.shape == (10, )
        assert torch.allclose(a.pred_score, a.student_logits.softmax(0))


def test_plain_inputs_make_teacher_views_from_the_student_view():
    model = MODELS.build(distiller_cfg())
    data = batch()
    data['inputs'] = data['inputs']['student']
    out = model.data_preprocessor(data, training=False)
    assert out['inputs']['teachers'][0].shape[-2:] == (16, 16)


def test_ensemble_targets():
    a = torch.tensor([[2.0, 0.0, -1.0]])
    b = torch.tensor([[0.0, 1.0, 3.0]])
    assert torch.allclose(combine_teachers([a, b], 'mean_logits'), (a + b) / 2)
    for tau in (1.0, 3.0):
        target = combine_teachers([a, b], 'mean_probs', tau)
        mean_p = (torch.softmax(a / tau, 1) + torch.softmax(b / tau, 1)) / 2
        assert torch.allclose(torch.softmax(target / tau, 1), mean_p)


@pytest.mark.parametrize('combine', ['mean_logits', 'mean_probs'])
def test_two_teachers_each_read_their_own_view(combine):
    """Two teachers on views of different sizes and pixels: the loss is the
    KL to the combination of each teacher's logits on its own view, and
    handing each the other's view changes it."""
    model = MODELS.build(distiller_cfg(2, teacher_combine=combine))
    with torch.no_grad():  # confident teachers: the targets differ clearly
        for teacher in model.teachers:
            teacher.head.fc.weight.mul_(20)
    model.train()
    data = batch()
    g = torch.Generator().manual_seed(1)
    data['inputs']['teachers'].append(  # darker pixels than the 16 px view
        torch.randint(0, 64, (4, 3, 24, 24), dtype=torch.uint8, generator=g))
    mixup = model.data_preprocessor.get_extra_state()

    def loss_and_hand_kl(teacher_views):
        # The same mixup draw for every call.
        model.data_preprocessor.set_extra_state(mixup)
        raw = dict(data, inputs=dict(data['inputs'], teachers=teacher_views))
        inputs = model.data_preprocessor(copy.deepcopy(raw),
                                         training=True)['inputs']
        loss = model(inputs, data['data_samples'], mode='loss')
        views = inputs['teachers']
        t0 = model.teachers[0](views[0], mode='tensor')
        t1 = model.teachers[1](views[1], mode='tensor')
        if combine == 'mean_logits':
            pt = ((t0 + t1) / 2).log_softmax(1)
        else:
            pt = ((t0.softmax(1) + t1.softmax(1)) / 2).log()
        ps = model.student(inputs['student'], mode='tensor').log_softmax(1)
        return (loss['loss_distill'].item(),
                (pt.exp() * (pt - ps)).sum(1).mean().item())

    views = data['inputs']['teachers']
    assert [tuple(v.shape[-2:]) for v in views] == [(16, 16), (24, 24)]
    loss, hand = loss_and_hand_kl(views)
    # The loss's own float32 operations on logits recomputed from the same
    # views by the same models: a rounding or two apart.
    assert loss == pytest.approx(hand, rel=1e-5)
    swapped, swapped_hand = loss_and_hand_kl(views[::-1])
    assert swapped == pytest.approx(swapped_hand, rel=1e-5)
    print(f'two teachers ({combine}): loss {loss:.4f}, views swapped '
          f'{swapped:.4f}')
    assert abs(swapped - loss) > 0.01 * loss, (loss, swapped)


def test_class_count_mismatch_is_a_clear_error():
    cfg = distiller_cfg()
    cfg['teachers'][0]['model'] = tiny_classifier(8, num_classes=7)
    with pytest.raises(ValueError, match='num_classes=7'):
        MODELS.build(cfg)


def test_missing_teacher_checkpoint_is_a_clear_error(tmp_path):
    cfg = distiller_cfg()
    cfg['teachers'][0]['checkpoint'] = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        MODELS.build(cfg)


def test_mismatched_teacher_checkpoint_names_the_keys(tmp_path):
    other = MODELS.build(tiny_classifier(8))
    state = other.state_dict()
    state['backbone.extra.weight'] = torch.zeros(1)
    del state['head.fc.bias']
    path = str(tmp_path / 'teacher.pth')
    torch.save(state, path)
    cfg = distiller_cfg()
    cfg['teachers'][0]['checkpoint'] = path
    with pytest.raises(RuntimeError, match=r'head\.fc\.bias.*backbone\.extra'):
        MODELS.build(cfg)


def test_teacher_checkpoint_is_loaded(tmp_path):
    source = MODELS.build(tiny_classifier(8))
    path = str(tmp_path / 'teacher.pth')
    torch.save(source.state_dict(), path)
    cfg = distiller_cfg()
    cfg['teachers'][0]['checkpoint'] = path
    model = MODELS.build(cfg)
    model.init_weights()  # must not re-initialise the teacher
    for k, v in source.state_dict().items():
        assert torch.equal(model.teachers[0].state_dict()[k], v)


def test_bad_config_values():
    with pytest.raises(ValueError, match='teacher_combine'):
        MODELS.build(distiller_cfg(teacher_combine='max'))
    with pytest.raises(ValueError, match='at least one teacher'):
        MODELS.build(dict(distiller_cfg(), teachers=[]))


# -- feature_loss (SRD) -------------------------------------------------------
def _srd_cfg(n_teachers=1, **srd):
    return distiller_cfg(n_teachers, feature_loss=dict(type='SRDLoss', **srd))


def _batch_for(n_teachers):
    data = batch()
    data['inputs']['teachers'] = data['inputs']['teachers'] * n_teachers
    return data


def test_feature_loss_reads_the_features_of_the_logits_forward():
    """loss_feature is SRDLoss on the features that feed each classifier on
    the step's own (mixed) views, from one forward of each model."""
    model = MODELS.build(_srd_cfg(2))
    assert model.feature_loss.student_channels == 32  # filled in: width 4
    assert model.feature_loss.teacher_channels == [64, 64]
    model.train()
    data = model.data_preprocessor(_batch_for(2), training=True)
    calls = []
    handles = [m.register_forward_hook(lambda *a, k=k: calls.append(k))
               for k, m in (('s', model.student), ('t0', model.teachers[0]),
                            ('t1', model.teachers[1]))]
    reference = copy.deepcopy(model.feature_loss)
    losses = model(**data, mode='loss')
    for h in handles:
        h.remove()
    assert sorted(calls) == ['s', 't0', 't1']  # no extra forward
    views = data['inputs']
    with torch.no_grad():
        s = model.student.head.pre_logits(
            model.student.extract_feat(views['student']))
        ts = [t.head.pre_logits(t.extract_feat(v))
              for t, v in zip(model.teachers, views['teachers'])]
        expected = reference(s, ts)
    # The same float32 operations in the same order on the same inputs.
    assert torch.equal(losses['loss_feature'].detach(), expected)
    assert 'loss_distill' in losses


def test_projector_is_optimised_checkpointed_and_loads_back():
    model = MODELS.build(_srd_cfg(1))
    wrapper = optim_wrapper(model)
    optimised = {id(p) for g in wrapper.optimizer.param_groups
                 for p in g['params']}
    assert optimised == {id(p) for p in model.student.parameters()} | {
        id(p) for p in model.feature_loss.parameters()}
    model.train()
    before = model.feature_loss.projectors[0].weight.clone()
    model.train_step(_batch_for(1), wrapper)
    assert not torch.equal(before, model.feature_loss.projectors[0].weight)
    state = get_state_dict(model)
    assert {'feature_loss.projectors.0.weight',
            'feature_loss.projectors.0.bias',
            'feature_loss.teacher_norms.0.running_mean',
            'feature_loss.teacher_norms.0.running_var'} <= set(state)
    assert not any(k.startswith('teachers.') for k in state)
    other = MODELS.build(_srd_cfg(1))
    load_state_dict(other, state, strict=True)
    for k, v in other.feature_loss.state_dict().items():
        assert torch.equal(v, model.feature_loss.state_dict()[k]), k


def test_feature_widths_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match=r'declares student_channels=16 but '
                       r"the student's penultimate features .* are 32 wide"):
        MODELS.build(_srd_cfg(1, student_channels=16))
    with pytest.raises(ValueError, match=r'declares teacher_channels=\[64, '
                       r'128\] but .* teachers .* are \[64, 64\] wide'):
        MODELS.build(_srd_cfg(2, teacher_channels=[64, 128]))
    # One int for every teacher, checked against each.
    model = MODELS.build(_srd_cfg(2, teacher_channels=64, student_channels=32))
    assert model.feature_loss.teacher_channels == [64, 64]
    with pytest.raises(ValueError, match='compile_teachers=False'):
        MODELS.build(distiller_cfg(feature_loss=dict(type='SRDLoss'),
                                   compile_teachers=True))


def test_feature_loss_without_a_teacher_forward_says_so():
    """A subclass whose teacher_targets serves targets without running the
    teachers (stored ones) cannot give SRD its features."""
    from mmfunmatch.models.algorithms import FunMatchDistiller

    class Stored(FunMatchDistiller):

        def teacher_targets(self, views, data_samples=None):
            return [torch.zeros(views[0].size(0), 10)]

    model = Stored(**{k: v for k, v in _srd_cfg(1).items() if k != 'type'})
    model.train()
    data = model.data_preprocessor(batch(), training=True)
    with pytest.raises(RuntimeError, match=r"needs the penultimate features "
                       r"of every teacher .* \['model.teachers.0'\] did not "
                       r"run"):
        model(**data, mode='loss')
