"""BYOTClassifier (mmfunmatch/models/algorithms/byot.py): the three terms of
each shallow head against hand computations on the heads' own outputs, the
targets detached, the auxiliary heads trained and checkpointed but not
exported, the deepest head's prediction, and the errors."""
import math

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmfunmatch.apis.export import export_student
from tests.conftest import REPO, tiny_classifier

BYOT = f'{REPO}/configs/funmatch/byot/byot_resnet18_w8_digits.py'


def byot_cfg(**kwargs):
    cfg = dict(type='BYOTClassifier', student=tiny_classifier(4),
               probe_size=16,
               data_preprocessor=dict(type='FunMatchDataPreprocessor',
                                      mean=[127.5] * 3, std=[127.5] * 3,
                                      num_classes=10))
    cfg.update(kwargs)
    return cfg


def _inputs(n=6):
    torch.manual_seed(0)
    x = torch.randn(n, 3, 16, 16)
    samples = [DataSample().set_gt_label(i % 10) for i in range(n)]
    return x, samples


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_heads_follow_each_shallow_stage():
    model = MODELS.build(byot_cfg())
    # ResNet-18 width 4 at 16 px: stages (4, 16), (8, 8), (16, 4), (32, 2).
    assert model.stages == ['backbone.layer1', 'backbone.layer2',
                            'backbone.layer3']
    assert [len(h.blocks) for h in model.aux_heads] == [3, 2, 1]
    assert all(h.fc.in_features == 32 and h.fc.out_features == 10
               for h in model.aux_heads)


@pytest.mark.parametrize('alpha,tau,beta', [(0.3, 3.0, 0.03),
                                            (0.6, 1.5, 0.5)])
def test_three_terms_of_each_shallow_head_by_hand(alpha, tau, beta):
    """labels: (1 - alpha) CE; KL: alpha tau^2 KL(deep/tau || head/tau);
    features: beta * mean_n ||f_head - f_deep||^2; the deepest head: CE."""
    model = MODELS.build(byot_cfg(alpha=alpha, tau=tau, feature_weight=beta))
    model.train()  # batch statistics: the same output for the same batch
    x, samples = _inputs()
    with torch.no_grad():
        aux, (deep_f, deep_z) = model.heads(x)
    losses = model.loss(x, samples)
    labels = np.arange(6) % 10
    z_deep = deep_z.double().numpy()
    ce_deep = -_log_softmax(z_deep)[np.arange(6), labels].mean()
    # float32 forward against a float64 hand computation of the same
    # logits: a few float32 roundings of values of order 1-10.
    tol = dict(rel=1e-5, abs=1e-6)
    assert losses['loss_label_deep'].item() == pytest.approx(ce_deep, **tol)
    log_t = _log_softmax(z_deep / tau)
    for i, (f, z) in enumerate(aux, start=1):
        z = z.double().numpy()
        ce = -_log_softmax(z)[np.arange(6), labels].mean()
        log_s = _log_softmax(z / tau)
        kl = (np.exp(log_t) * (log_t - log_s)).sum(1).mean() * tau**2
        l2 = ((f.double().numpy() - deep_f.double().numpy())**2).sum(1).mean()
        assert losses[f'loss_label_{i}'].item() == pytest.approx(
            (1 - alpha) * ce, **tol)
        assert losses[f'loss_kl_{i}'].item() == pytest.approx(alpha * kl,
                                                              **tol)
        assert losses[f'loss_feature_{i}'].item() == pytest.approx(beta * l2,
                                                                   **tol)
    assert set(losses) == {'loss_label_deep'} | {
        f'loss_{k}_{i}' for k in ('label', 'kl', 'feature') for i in (1, 2, 3)}


def test_the_deepest_head_is_a_target_not_a_learner_of_the_shallow_terms():
    """No gradient from a shallow head's KL or feature term reaches what
    only the deepest head uses (the last stage and the classifier)."""
    model = MODELS.build(byot_cfg())
    model.train()
    x, samples = _inputs()
    losses = model.loss(x, samples)
    deep_only = list(model.student.backbone.layer4.parameters()) + list(
        model.student.head.parameters())
    shallow = sum(v for k, v in losses.items()
                  if k.startswith(('loss_kl', 'loss_feature')))
    grads = torch.autograd.grad(shallow, deep_only, allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    grad_aux = torch.autograd.grad(losses['loss_kl_1'],
                                   model.aux_heads[0].fc.weight)[0]
    assert grad_aux.abs().sum() > 0


def test_labels_only_control_has_zero_distillation_terms():
    model = MODELS.build(byot_cfg(alpha=0.0, feature_weight=0.0))
    model.train()
    losses = model.loss(*_inputs())
    for i in (1, 2, 3):
        assert losses[f'loss_kl_{i}'].item() == 0
        assert losses[f'loss_feature_{i}'].item() == 0
        assert losses[f'loss_label_{i}'].item() > 0


def test_predict_is_the_deepest_head_with_aux_logits_attached():
    model = MODELS.build(byot_cfg()).eval()
    x, samples = _inputs()
    out = model.predict(x, samples)
    with torch.no_grad():
        deep = model.student(x, mode='tensor')
        aux, _ = model.heads(x)
    for i, s in enumerate(out):
        assert torch.equal(s.pred_score, deep[i].softmax(0))
        assert s.aux_logits.shape == (3, 10)
        assert torch.equal(s.aux_logits, torch.stack([a[1][i] for a in aux]))
    assert torch.equal(model(x, mode='tensor'), deep)


def test_aux_heads_are_optimised_checkpointed_and_not_exported(tmp_path):
    cfg = Config.fromfile(BYOT)
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, dict(
        constructor='FunMatchOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.1)))
    optimised = {id(p) for g in wrapper.optimizer.param_groups
                 for p in g['params']}
    assert optimised == {id(p) for p in model.parameters()}
    state = model.state_dict()
    assert any(k.startswith('aux_heads.') for k in state)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=state, meta=dict(cfg=cfg.pretty_text)), path)
    weights, cfg_path = export_student(path, str(tmp_path / 'out'))
    saved = torch.load(weights, weights_only=True)['state_dict']
    assert set(saved) == set(model.student.state_dict())
    plain_cfg = Config.fromfile(cfg_path)
    assert plain_cfg.model.type == 'ImageClassifier'
    plain = MODELS.build(plain_cfg.model).eval()
    plain.load_state_dict(saved, strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(plain(x, mode='tensor'),
                           model.eval()(x, mode='tensor'))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="no submodule 'backbone.stage9'"):
        MODELS.build(byot_cfg(stages=['backbone.stage9']))
    with pytest.raises(ValueError, match=r'alpha is a mixing weight in '
                       r'\[0, 1\], got 1.5'):
        MODELS.build(byot_cfg(alpha=1.5))
    model = MODELS.build(byot_cfg())
    x, samples = _inputs()
    with pytest.raises(ValueError, match='learns from labels'):
        model.loss(x, [DataSample() for _ in samples])


def test_kl_term_is_zero_when_a_head_copies_the_deepest():
    """A sanity anchor for the KL's direction and temperature: identical
    logits give 0, and tau^2 scales it as the hand formula says."""
    from mmfunmatch.models.losses.kl_divergence import kl_divergence_t
    z = torch.tensor([[1., 2., 3.]])
    assert kl_divergence_t(z, z, 3.0).item() == 0
    t = torch.tensor([[0., 0., math.log(2.)]])  # p = (1/4, 1/4, 1/2)
    s = torch.zeros(1, 3)                          # q = (1/3, 1/3, 1/3)
    expected = 0.5 * math.log(0.5 * 3) + 0.5 * math.log(0.25 * 3)
    assert kl_divergence_t(s, t, 1.0).item() == pytest.approx(expected,
                                                              rel=1e-6)
