"""The demo driver's progress lines and its multi-seed summary."""
import io

import pytest

from projects.funmatch_paper.demo import (compare_with_reference, follow,
                                          mean_std, progress_line,
                                          seeds_table, summary)

TRAIN = ('12/01 13:06:13 - mmengine - INFO - Epoch(train) [24][6/6]  '
         'base_lr: 3.0000e-03 lr: 3.0000e-03  eta: 0:04:03  time: 0.2161  '
         'loss: 0.0899  agreement: 0.1562  label_ce: 2.3325\n')
VAL = ('12/01 13:06:18 - mmengine - INFO - Epoch(val) [25][5/5]    '
       'accuracy/top1: 91.2000  teacher/agreement: 93.4000  '
       'teacher/kl: 0.1209  data_time: 0.0258  time: 0.2153\n')
TEACHER_VAL = ('12/01 13:06:04 - mmengine - INFO - Epoch(val) [20][5/5]    '
               'accuracy/top1: 99.0000  data_time: 0.0313  time: 0.2591\n')


def test_one_progress_line_per_validation_with_the_eta():
    log, out = io.StringIO(), io.StringIO()
    follow(iter([TRAIN, 'other\n', VAL]), log, 'funmatch', 250, out)
    assert log.getvalue() == TRAIN + 'other\n' + VAL  # the log keeps all
    assert out.getvalue() == ('[demo] funmatch epoch  25/250: val top-1 '
                              '91.2, agreement 93.4 (run eta 0:04:03)\n')


def test_progress_of_the_teacher_and_the_last_epoch():
    assert progress_line(TEACHER_VAL, 'teacher', 20, {'eta': '0:00:01'}) == (
        '[demo] teacher  epoch  20/20: val top-1 99.0')
    assert progress_line(TRAIN, 'teacher', 20, {}) is None


ROWS = [dict(seed=s, run=run, val_top1=v, agreement=a)
        for s, (t, lb, fm) in enumerate([(99.0, 97.0, 99.4), (98.8, 96.0,
                                                               98.0),
                                         (99.2, 96.5, 98.6)])
        for run, v, a in (('teacher', t, float('nan')), ('label', lb, 96.0),
                          ('funmatch', fm, 99.0))]


def test_summary_pairs_the_margin_by_seed():
    stats = summary(ROWS)
    assert stats['margin']['val_top1'] == pytest.approx([2.4, 2.0, 2.1])
    assert stats['label']['val_top1'] == [97.0, 96.0, 96.5]
    # Sample std (ddof=1) of 97.0, 96.0, 96.5 is 0.5.
    assert mean_std(stats['label']['val_top1']) == '96.5 +- 0.5'
    assert mean_std([float('nan')]) == '-'
    table = seeds_table(ROWS)
    assert '| 96.5 +- 0.5 | 97.0, 96.0, 96.5 |' in table
    assert 'FunMatch minus label-only (points) | 2.2 +- 0.2 |' in table


def test_one_seed_placed_in_the_reference_spread():
    mine = [dict(seed=0, run='label', val_top1=97.0, agreement=96.0),
            dict(seed=0, run='funmatch', val_top1=97.5, agreement=98.0)]
    text = compare_with_reference(mine, ROWS)
    assert 'label student val top-1: 97.0 here' in text
    assert 'funmatch student val top-1: 97.5 here; reference 98.7 +- 0.7 ' \
           '(range 98.0 to 99.4): below its range.' in text
    assert 'FunMatch minus label-only: 0.5 here' in text
