import glob
import math
import os.path as osp
import subprocess
import sys

import cv2
import pytest
import torch
from mmengine.config import Config

from projects.funmatch_paper.benchmark import (REQUIRED_FIELDS, benchmark,
                                               compare_consistent_view,
                                               fast_path_fidelity,
                                               format_report, write_photos)
from tests.conftest import REPO

DEMO_CFG = osp.join(REPO, 'configs', 'funmatch', 'demo',
                    'digits_funmatch_student.py')


@pytest.fixture(scope='module')
def report(digits_root, tmp_path_factory):
    cfg = Config.fromfile(DEMO_CFG)
    cfg.merge_from_dict({
        'model.teachers.0.checkpoint': None,
        'train_dataloader.dataset.data_root': digits_root,
        'train_dataloader.num_workers': 1,
    })
    return benchmark(cfg, iters=2, warmup=1, batch_size=8, cv_images=4,
                     cv_rounds=1,
                     work_dir=str(tmp_path_factory.mktemp('bench')))


def test_report_has_every_field_positive_and_finite(report):
    for key in REQUIRED_FIELDS:
        assert key in report, key
        assert math.isfinite(report[key]) and report[key] > 0, (key,
                                                                report[key])
    # The demo pipeline has a teacher view: its own data path is compared.
    for key in ('cv_config_ms', 'cv_config_independent_ms',
                'cv_config_ratio'):
        assert math.isfinite(report[key]) and report[key] > 0
    if report['info']['device'] == 'cpu':
        assert 'mfu' not in report  # no peak to divide by
    elif 'mfu' in report:
        assert 0 < report['mfu'] < 1
    assert report['batch_size'] == 8 and report['iters'] == 2


def test_report_is_self_consistent(report):
    assert report['images_per_s'] == pytest.approx(
        report['batch_size'] * 1000 / report['step_ms'])
    assert report['ratio_vs_hand'] == pytest.approx(
        report['train_step_ms'] / report['hand_step_ms'])
    assert report['model_gflops_per_image'] == pytest.approx(
        report['teacher_gflops_per_image'] +
        3 * report['student_gflops_per_image'])
    # The fidelity figures are measured on this machine's kernels and are
    # only reported (tests/models/test_fast_path.py checks the fast
    # path against a bound derived from bf16 rounding). What holds anywhere:
    # the agreement is a count over the batch's teacher views (k of 8), and
    # the fast path really rounds to bf16, so it moves the probabilities.
    print(f'fast path: top-1 agreement {report["fast_top1_agreement"]:.3f}, '
          f'max |delta p| {report["fast_max_abs_dp"]:.2e}')
    agreeing = report['fast_top1_agreement'] * report['batch_size']
    assert agreeing == round(agreeing)
    assert report['fast_max_abs_dp'] > 0
    # Within the bound bf16 rounding allows (a property, not a reading).
    assert report['fast_violations'] == 0, report['info']['fast_violations']
    assert report['info']['student_input'] == '3x16x16'


def test_markdown_table(report):
    text = format_report(report)
    for row in ('| train_step, ms', '| data wait', '| teacher forward',
                '| student forward + loss + backward', '| optimizer',
                '| ms per batch', '| photographs 500x375 JPEG',
                'teacher fwd + 3 x student fwd', 'MFU'):
        assert row in text, row
    # The table states the run's own fidelity figures.
    assert (f'top-1 agreement {100 * report["fast_top1_agreement"]:.1f} %, '
            f'max abs delta p {report["fast_max_abs_dp"]:.2e}') in text
    # The tables: each header's columns, a separator of as many cells, and
    # every row with as many cells as its header.
    tables, rows = [], None
    for line in text.splitlines():
        if not line.startswith('|'):
            rows = None
            continue
        assert line.endswith('|'), line
        cells = [c.strip() for c in line[1:-1].split('|')]
        if rows is None:
            rows = []
            tables.append((cells, rows))
        else:
            rows.append(cells)
    assert [header for header, _ in tables] == [
        ['training step', 'mmfunmatch', 'hand-written PyTorch',
         'mmfunmatch / hand-written'],
        ['phase (instrumented train_step; data wait from the contiguous '
         'pass)', 'ms/step'],
        ['teacher forward', 'fp32 (NCHW, no_grad)',
         'fast (bf16 autocast + channels_last + inference_mode)',
         'fast / fp32'],
        ['data path, ms per image',
         'ConsistentView (1 decode, 1 crop, resize per model)',
         'two independent decode+crop pipelines', 'ratio (target <= 0.6)'],
        ['data path, ms per image', 'ConsistentView',
         'one single-view pipeline (RandomResizedCrop 224)',
         'ConsistentView images/s / single-view images/s'],
        ['FLOPs (FlopCounterMode)', 'GFLOP per image'],
    ]
    for header, rows in tables:
        assert rows[0] == ['---'] * len(header), header
        assert len(rows) > 1, header
        for row in rows[1:]:
            assert len(row) == len(header), (header, row)


def test_flops_match_a_hand_count():
    from projects.funmatch_paper.benchmark import count_flops
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 2 FLOPs per multiply-add: N * Cout * H * W * Cin * k * k.
    assert count_flops(conv, torch.zeros(2, 3, 10, 10)) == (2 * 2 * 8 * 100 *
                                                            3 * 9)


def test_fidelity_of_identical_and_flipped_logits():
    ref = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    same = fast_path_fidelity(ref, ref.clone())
    assert same == dict(top1_agreement=1.0, max_abs_dp=0.0,
                        max_abs_dlogit=0.0)
    flipped = fast_path_fidelity(ref, ref.flip(1))
    assert flipped['top1_agreement'] == 0.0
    assert flipped['max_abs_dlogit'] == 2.0


def test_consistent_view_comparison_on_photographs(tmp_path):
    paths = write_photos(str(tmp_path), 3)
    img = cv2.imread(paths[0])
    assert img.shape == (375, 500, 3)  # ImageNet's typical photo size
    out = compare_consistent_view(
        paths, dict(student_size=32, teacher_sizes=[48]), rounds=1)
    assert set(out) == {'consistent_ms', 'independent_ms', 'ratio',
                        'single_ms', 'vs_single'}
    assert out['ratio'] == pytest.approx(out['consistent_ms'] /
                                         out['independent_ms'])
    assert out['vs_single'] == pytest.approx(out['single_ms'] /
                                             out['consistent_ms'])
    # The student's pipeline is one of the two summed.
    assert out['single_ms'] < out['independent_ms']


def test_tool_help_runs():
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'benchmark.py'), '--help'],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag in ('--iters', '--warmup', '--batch-size', '--cfg-options',
                 '--photo-data'):
        assert flag in proc.stdout


@pytest.mark.parametrize('config', sorted(
    glob.glob(osp.join(REPO, 'configs', 'funmatch', 'demo', 'digits_*.py')) +
    glob.glob(osp.join(REPO, 'configs', 'funmatch', '*imagenet*.py'))),
    ids=osp.basename)
def test_shipped_configs_pin_memory_and_keep_workers(config):
    cfg = Config.fromfile(config)
    for name in ('train_dataloader', 'val_dataloader'):
        loader = cfg[name]
        assert loader.num_workers > 0, name
        assert loader.pin_memory is True, name
        assert loader.persistent_workers is True, name
