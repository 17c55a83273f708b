"""The teacher report: calibration against hand computations, the
label-smoothing rule on synthetic logits and on two teachers trained here on
digits (one with label smoothing, one without), and the tool end to end."""
import glob
import math
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmfunmatch.evaluation.teacher_report import (
    calibration, expected_calibration_error, fit_temperature,
    label_smoothing_fingerprint, mix_rolled, nll, recommend_tau,
    reliability_bins, teacher_report, via_size)
from tests.conftest import REPO

DEMO = osp.join(REPO, 'configs', 'funmatch', 'demo')


def two_class_logits(p: float) -> list:
    """Logits whose softmax gives class 0 probability ``p``."""
    return [math.log(p / (1 - p)), 0.0]


# -- calibration -------------------------------------------------------------
def test_ece_matches_hand_computation():
    # Confidences 0.95, 0.95 (one right, one wrong) and 0.55, 0.55 (both
    # right): ECE = 0.5 * |0.5 - 0.95| + 0.5 * |1 - 0.55| = 0.45.
    logits = torch.tensor([two_class_logits(0.95)] * 2 +
                          [two_class_logits(0.55)] * 2)
    labels = torch.tensor([0, 1, 0, 0])
    probs = logits.softmax(1)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.45)
    bins = reliability_bins(probs, labels)
    # 0.95 lies in (14/15, 1], 0.55 in (8/15, 9/15].
    assert bins['count'].tolist() == [0] * 8 + [2] + [0] * 5 + [2]
    assert bins['accuracy'][14] == pytest.approx(0.5)
    assert bins['confidence'][8] == pytest.approx(0.55)
    assert np.isnan(bins['accuracy'][0])


def test_confidence_one_goes_to_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    bins = reliability_bins(probs, torch.tensor([0, 0]))
    # 0.5 lies in (7/15, 8/15].
    assert bins['count'][14] == 1 and bins['count'][7] == 1


def test_nll_matches_hand_computation():
    logits = torch.tensor([[math.log(3.0), 0.0]])
    labels = torch.tensor([0])
    assert nll(logits, labels) == pytest.approx(-math.log(0.75))
    # At T = 2 the odds are sqrt(3) : 1.
    s3 = math.sqrt(3.0)
    assert nll(logits, labels, 2.0) == pytest.approx(-math.log(s3 / (s3 + 1)))


def calibrated_sample(n: int = 20000, num_classes: int = 10, seed: int = 0):
    """Logits and labels drawn from the logits' own softmax: calibrated."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, num_classes, generator=g,
                               dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(1), 1, generator=g)[:, 0]
    return logits, labels


def test_calibrated_data_has_small_ece_and_unit_temperature():
    logits, labels = calibrated_sample()
    ece = expected_calibration_error(logits.softmax(1), labels)
    assert ece < 0.015  # sampling noise only
    t, at_bound = fit_temperature(logits, labels)
    assert t == pytest.approx(1.0, abs=0.04) and not at_bound


def test_logits_scaled_by_three_fit_temperature_three():
    logits, labels = calibrated_sample(seed=1)
    result = calibration(3.0 * logits, labels)
    assert result['temperature'] == pytest.approx(3.0, rel=0.04)
    assert result['before']['ece'] > 0.1  # over-confident
    assert result['after']['ece'] < 0.015
    assert result['after']['nll'] < result['before']['nll']
    # Scaling does not change the top-1.
    assert result['after']['accuracy'] == result['before']['accuracy']


def test_fit_is_the_nll_minimum():
    logits, labels = calibrated_sample(n=3000, seed=2)
    logits = 0.4 * logits  # under-confident
    t, _ = fit_temperature(logits, labels)
    assert t == pytest.approx(0.4, rel=0.1)
    for other in (0.9 * t, 1.1 * t):
        assert nll(logits, labels, t) < nll(logits, labels, other)


def test_separable_data_fits_at_the_bound():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    t, at_bound = fit_temperature(logits, torch.tensor([0, 1]))
    assert at_bound and t < 0.02


# -- the label-smoothing rule on synthetic logits -------------------------
G_STAR = math.log(91.0)  # eps = 0.1, C = 10: log(1 + 10 * 0.9 / 0.1)


def smoothed_logits(n: int = 400, num_classes: int = 10, seed: int = 0,
                    converged: bool = False):
    """Samples part-way (``c`` in [0, 1]) to the smoothing optimum: the
    further along, the closer the gap to g* and the flatter the others."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n, ), generator=g)
    c = torch.ones(n) if converged else torch.rand(n, generator=g)
    logits = (0.5 * (1 - c) + 0.05)[:, None] * torch.randn(
        n, num_classes, generator=g)
    others = ~F.one_hot(labels, num_classes).bool()
    mean_others = (logits * others).sum(1) / (num_classes - 1)
    logits[torch.arange(n), labels] = mean_others + G_STAR - 1.5 * (1 - c)
    return logits, labels


def cross_entropy_logits(n: int = 400, num_classes: int = 10, seed: int = 0):
    """Spread non-target logits; samples differ in scale (feature norm)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n, ), generator=g)
    logits = 1.5 * torch.randn(n, num_classes, generator=g)
    logits[torch.arange(n), labels] = 9.0
    return logits * (0.5 + torch.rand(n, 1, generator=g)), labels


def test_partly_converged_smoothing_is_flagged():
    logits, labels = smoothed_logits()
    fp = label_smoothing_fingerprint(logits, labels)
    assert fp['flagged'], fp['reason']
    assert fp['uniformity_median'] > 0.95
    assert fp['gap_spread_corr'] < -0.5
    assert recommend_tau(fp, 1.7)[0] == 1.0


def test_implied_eps_inverts_the_smoothing_gap():
    logits, labels = smoothed_logits(converged=True)
    fp = label_smoothing_fingerprint(logits, labels)
    assert fp['gap_median'] == pytest.approx(G_STAR, rel=1e-4)
    assert fp['eps_implied'] == pytest.approx(0.1, rel=1e-3)
    assert fp['uniformity_median'] > 0.99


def test_cross_entropy_shape_is_not_flagged_at_any_temperature():
    logits, labels = cross_entropy_logits()
    fp = label_smoothing_fingerprint(logits, labels)
    assert not fp['flagged'] and fp['uniformity_median'] < 0.9
    assert fp['gap_spread_corr'] > 0.5
    # Divided by a temperature the non-target probabilities get flat, but
    # the gap and the spread still grow together: not flagged.
    cooled = label_smoothing_fingerprint(logits / 6.0, labels)
    assert cooled['uniformity_median'] > 0.95
    assert cooled['gap_spread_corr'] == pytest.approx(fp['gap_spread_corr'])
    assert not cooled['flagged'] and 'small logit scale' in cooled['reason']


def test_untrained_model_is_not_flagged():
    g = torch.Generator().manual_seed(0)
    logits = 0.05 * torch.randn(500, 10, generator=g)
    labels = logits.argmax(1)  # score it on the images it "gets right"
    fp = label_smoothing_fingerprint(logits, labels)
    assert fp['uniformity_median'] > 0.99 and not fp['flagged']


def test_too_few_correct_predictions_are_undetermined():
    logits, labels = smoothed_logits(n=15)
    fp = label_smoothing_fingerprint(logits, labels)
    assert not fp['flagged'] and fp['reason'].startswith('undetermined')


def test_tau_for_a_plain_teacher_follows_its_temperature():
    fp = dict(flagged=False)
    assert recommend_tau(fp, 0.5)[0] == 1.0
    assert recommend_tau(fp, 1.8)[0] == 2.0
    assert recommend_tau(fp, 4.0)[0] == 5.0


def test_mixing_rolls_the_batch_by_one():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    mixed = mix_rolled(x, 0.75)
    # Sample i is mixed with sample i - 1 (sample 0 with the last).
    assert mixed[:, 0, 0, 0].tolist() == [0.75 * 0 + 0.25 * 3,
                                          0.75 * 1 + 0.25 * 0,
                                          0.75 * 2 + 0.25 * 1,
                                          0.75 * 3 + 0.25 * 2]
    assert torch.equal(mix_rolled(x, 1.0), x)
    img = torch.rand(2, 3, 16, 16)
    assert via_size(img, (8, 8)).shape == img.shape
    assert torch.equal(via_size(img, (16, 16)), img)
    # A constant image survives the round trip.
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(via_size(flat, (8, 8)), flat)


# -- two teachers trained on digits -------------------------------------------
WIDTH = 8


def load_split(root: str, split: str, size: int = 16):
    """A split of the digits folder as (uint8 BGR NCHW, labels), resized as
    the demo's test pipeline resizes (cv2 bilinear)."""
    xs, ys = [], []
    for c in range(10):
        for path in sorted(glob.glob(osp.join(root, split, str(c), '*.png'))):
            img = cv2.resize(cv2.imread(path), (size, size),
                             interpolation=cv2.INTER_LINEAR)
            xs.append(img.transpose(2, 0, 1))
            ys.append(c)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


def teacher_model_cfg(label_smoothing: float) -> dict:
    loss = (dict(type='LabelSmoothLoss', label_smooth_val=label_smoothing,
                 mode='original') if label_smoothing else
            dict(type='CrossEntropyLoss'))
    return dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet_CIFAR', depth=18, base_channels=WIDTH),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10,
                  in_channels=WIDTH * 8, loss=loss),
        data_preprocessor=dict(type='ClsDataPreprocessor',
                               mean=[127.5] * 3, std=[127.5] * 3,
                               to_rgb=True))


def train_teacher(label_smoothing: float, root: str, path: str,
                  epochs: int = 5) -> None:
    """A compact loop over the mmpretrain model's own loss (no augment:
    seconds on one core)."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    x, y = load_split(root, 'train')
    model = MODELS.build(teacher_model_cfg(label_smoothing))
    batch = 64
    steps = epochs * (len(y) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3,
                            weight_decay=1e-4 / 3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps,
                                                pct_start=0.1)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for i in range(len(y) // batch):
            idx = order[i * batch:(i + 1) * batch]
            samples = [DataSample().set_gt_label(int(v)) for v in y[idx]]
            data = model.data_preprocessor(
                dict(inputs=x[idx], data_samples=samples), True)
            loss = sum(model(**data, mode='loss').values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    torch.save(dict(state_dict=model.state_dict()), path)


def write_config(path: str, root: str, label_smoothing: float) -> None:
    # _delete_: replace the demo teacher's model instead of merging into it.
    model = dict(_delete_=True, **teacher_model_cfg(label_smoothing))
    with open(path, 'w') as f:
        f.write(f'_base_ = [{osp.join(DEMO, "digits_teacher.py")!r}]\n'
                f'model = {model!r}\n'
                f'val_dataloader = dict(dataset=dict(data_root={root!r}))\n')


@pytest.fixture(scope='module')
def teachers(digits_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('teachers')
    out = {}
    for name, eps in (('smoothed', 0.1), ('plain', 0.0)):
        ckpt = str(work / f'{name}.pth')
        cfg = str(work / f'{name}.py')
        train_teacher(eps, digits_root, ckpt)
        write_config(cfg, digits_root, eps)
        out[name] = dict(ckpt=ckpt, cfg=cfg)
    out['work'] = work
    out['root'] = digits_root
    return out


def test_trained_teachers_label_smoothing_flag(teachers):
    plain = teacher_report(teachers['plain']['cfg'],
                           teachers['plain']['ckpt'],
                           str(teachers['work'] / 'plain_report'))
    assert plain['calibration']['before']['accuracy'] > 0.9
    assert not plain['fingerprint']['flagged'], plain['fingerprint']['reason']
    assert plain['verdict'].startswith('no label-smoothing fingerprint')

    smoothed = teacher_report(teachers['smoothed']['cfg'],
                              teachers['smoothed']['ckpt'],
                              str(teachers['work'] / 'smoothed_report'))
    fp = smoothed['fingerprint']
    assert smoothed['calibration']['before']['accuracy'] > 0.9
    assert fp['flagged'], fp['reason']
    assert fp['gap_spread_corr'] < 0 < plain['fingerprint']['gap_spread_corr']
    assert smoothed['tau'] == 1.0
    assert 'LABEL-SMOOTHED' in smoothed['verdict']
    # Smoothing caps the gap near log(91) = 4.5; cross-entropy runs past it.
    assert fp['gap_median'] < 6.0 < plain['fingerprint']['gap_median']
    assert fp['uniformity_median'] > plain['fingerprint']['uniformity_median']

    # Both reports are written in full.
    for name in ('plain_report', 'smoothed_report'):
        folder = teachers['work'] / name
        for suffix in ('.md', '.json', '_reliability.png',
                       '_fingerprint.png', '_queries.png'):
            assert (folder / f'teacher_report{suffix}').stat().st_size > 0
    # The mixed queries: clean accuracy is the report's accuracy, mixing
    # raises the teacher's entropy.
    rows = {r['lam']: r for r in plain['queries']}
    assert rows[1.0]['acc_dominant'] == pytest.approx(
        plain['calibration']['before']['accuracy'])
    assert rows[0.5]['entropy'] > rows[1.0]['entropy']
    assert rows[0.75]['acc_either'] >= rows[0.75]['acc_dominant']


def test_distiller_config_reports_its_first_teacher(teachers):
    """The same teacher reached through the demo FunMatch config (its val
    views come from ConsistentView) gives the same numbers, plus the
    student-resolution rows when the student is smaller."""
    root = teachers['root']
    plain = teacher_report(teachers['plain']['cfg'],
                           teachers['plain']['ckpt'], lams=(1.0, ))
    opts = {
        'model.teachers.0.model.backbone.base_channels': WIDTH,
        'model.teachers.0.model.head.in_channels': WIDTH * 8,
        'val_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.pipeline.1.student_size': 8,
    }
    report = teacher_report(
        osp.join(DEMO, 'digits_funmatch_student.py'),
        teachers['plain']['ckpt'], lams=(1.0, 0.5), cfg_options=opts)
    assert report['calibration']['before']['accuracy'] == pytest.approx(
        plain['calibration']['before']['accuracy'], abs=0.005)
    assert report['calibration']['temperature'] == pytest.approx(
        plain['calibration']['temperature'], rel=0.05)
    inputs = {r['input'] for r in report['queries']}
    assert inputs == {'teacher size', 'student size 8x8'}
    low = [r for r in report['queries']
           if r['input'] == 'student size 8x8' and r['lam'] == 1.0][0]
    assert 0.1 < low['acc_dominant'] <= 1.0


def test_tool_writes_the_report(teachers):
    out = str(teachers['work'] / 'tool_report')
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, 'tools/teacher_report.py',
         teachers['smoothed']['cfg'], '--checkpoint',
         teachers['smoothed']['ckpt'], '--out', out, '--lams', '1', '0.5',
         '--max-images', '300'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'LABEL-SMOOTHED' in proc.stdout
    assert 'recommended tau = 1' in proc.stdout
    with open(osp.join(out, 'teacher_report.md')) as f:
        text = f.read()
    assert '**flagged**' in text and 'teacher_report_reliability.png' in text
