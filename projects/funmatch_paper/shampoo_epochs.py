"""How many epochs Shampoo needs on the digits demo to reach the accuracy
AdamW reaches at the end of its schedule (the paper's section 3.4 claim:
Shampoo in 1200 ImageNet epochs matched Adam in 4800).

Both optimizers train the demo's FunMatch student
(configs/funmatch/demo/digits_funmatch_student.py and its ``_shampoo``
variant, which differ in the optimizer only) at several schedule lengths,
each a complete warm-up + cosine schedule, through the ablation study's
driver (same run folders, resumability, CSV and figures). The answer is the
shortest Shampoo schedule whose final val top-1 (mean over seeds) is at least
AdamW's at the longest schedule; the ratio is longest / that length.

Run it with ``python tools/shampoo_epochs.py``.
"""
import argparse
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

from projects.funmatch_paper.ablation import (REPO, Study, aggregate,
                                              read_records)

DEMO_CONFIGS = osp.join(REPO, 'configs', 'funmatch', 'demo')
OPTIMIZERS = (
    ('AdamW', osp.join(DEMO_CONFIGS, 'digits_funmatch_student.py')),
    ('Shampoo', osp.join(DEMO_CONFIGS, 'digits_funmatch_student_shampoo.py')),
)


def final_top1(rows: List[dict]) -> Dict[str, Dict[int, float]]:
    """Mean final val top-1 over seeds, per optimizer and schedule length."""
    top1: Dict[str, Dict[int, float]] = {}
    for (name, epochs), (mean, _, _) in aggregate(rows, 'val_top1').items():
        top1.setdefault(name, {})[int(epochs)] = mean
    return top1


def epochs_to_match(top1: Dict[str, Dict[int, float]],
                    reference: str = 'AdamW',
                    candidate: str = 'Shampoo') -> dict:
    """The shortest ``candidate`` schedule whose final top-1 reaches the
    ``reference``'s at its longest schedule.

    Returns:
        dict: ``target`` (the reference accuracy), ``reference_epochs``,
        ``epochs`` (None when no candidate schedule reaches the target) and
        ``ratio`` (reference_epochs / epochs, or None).
    """
    ref = top1.get(reference, {})
    cand = top1.get(candidate, {})
    if not ref or not cand:
        raise ValueError(f'need finished runs of both {reference} and '
                         f'{candidate}; have {sorted(top1)}')
    longest = max(ref)
    target = ref[longest]
    reached = sorted(e for e, acc in cand.items() if acc >= target)
    epochs = reached[0] if reached else None
    return dict(target=target, reference_epochs=longest, epochs=epochs,
                ratio=None if epochs is None else longest / epochs)


def step_time_ratio(rows: List[dict], reference: str = 'AdamW',
                    candidate: str = 'Shampoo') -> Optional[float]:
    """Median over schedule lengths and seeds of the candidate's median
    iteration time over the reference's (mmengine's logged ``time``: data,
    forward, backward, step), pairing runs of the same length and seed, which
    the driver runs side by side."""
    per_iter = {}
    for r in rows:
        train, _ = read_records(r['work_dir'])
        times = [t['time'] for t in train if 'time' in t]
        if times:
            per_iter[(r['setting'], int(r['epochs']),
                      int(r['seed']))] = statistics.median(times)
    ratios = [t / per_iter[(reference, e, s)]
              for (name, e, s), t in per_iter.items()
              if name == candidate and (reference, e, s) in per_iter]
    return statistics.median(ratios) if ratios else None


def summary_markdown(top1: Dict[str, Dict[int, float]], match: dict,
                     step_ratio: Optional[float]) -> str:
    lengths = sorted({e for by_len in top1.values() for e in by_len})
    lines = ['| optimizer | ' + ' | '.join(f'{e} ep' for e in lengths) +
             ' |', '| --- |' + ' --- |' * len(lengths)]
    for name, _ in OPTIMIZERS:
        if name in top1:
            lines.append(f'| {name} | ' + ' | '.join(
                f'{top1[name][e]:.1f}' if e in top1[name] else '-'
                for e in lengths) + ' |')
    text = '\n'.join(lines) + '\n\n'
    if match['epochs'] is None:
        text += (f'No Shampoo schedule reached AdamW\'s '
                 f'{match["reference_epochs"]}-epoch val top-1 of '
                 f'{match["target"]:.1f} %.')
    else:
        text += (f'Shampoo reached AdamW\'s {match["reference_epochs"]}-epoch '
                 f'val top-1 ({match["target"]:.1f} %) with a '
                 f'{match["epochs"]}-epoch schedule: '
                 f'{match["ratio"]:.2f}x fewer epochs.')
    if step_ratio is not None:
        text += (f' Shampoo / AdamW time per iteration (median of the '
                 f'logged iteration times, runs of equal length paired side '
                 f'by side): {step_ratio:.2f}x.')
    return text


def run_shampoo_epochs(work_dir: str = 'work_dirs/shampoo_epochs',
                       data_root: str = 'data/digits',
                       epochs: Sequence[int] = (31, 62, 125, 250),
                       seeds: Sequence[int] = (0, ),
                       teacher: Optional[str] = None,
                       jobs: int = 2,
                       val_points: int = 10,
                       md_path: Optional[str] = None,
                       dry_run: bool = False) -> dict:
    """Train what is missing and summarise.

    Returns:
        dict: the study's result (``rows``, ``paths``, ...) plus ``top1``,
        ``match``, ``step_ratio`` and ``summary`` (markdown).
    """
    study = Study(work_dir, data_root, [c for _, c in OPTIMIZERS],
                  seeds=seeds, epochs=epochs, teacher=teacher, jobs=jobs,
                  val_points=val_points, md_path=md_path,
                  names=[n for n, _ in OPTIMIZERS], prefix='shampoo_epochs')
    result = study.run(dry_run=dry_run)
    if dry_run or not result['rows']:
        return result
    top1 = final_top1(result['rows'])
    match = epochs_to_match(top1)
    step_ratio = step_time_ratio(result['rows'])
    summary = summary_markdown(top1, match, step_ratio)
    path = osp.join(study.work_dir, 'shampoo_epochs_summary.md')
    with open(path, 'w') as f:
        f.write(summary + '\n')
    result['paths']['summary'] = path
    result.update(top1=top1, match=match, step_ratio=step_ratio,
                  summary=summary)
    return result


# -- the command line (tools/shampoo_epochs.py) ------------------------------
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Epochs Shampoo needs on the digits demo to match '
        'AdamW\'s final accuracy.')
    parser.add_argument('--work-dir', default='work_dirs/shampoo_epochs')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--epochs', type=int, nargs='+',
                        default=[31, 62, 125, 250],
                        help='schedule lengths; the longest is AdamW\'s '
                        'reference (default 31 62 125 250, the demo\'s)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--teacher', help='teacher checkpoint to reuse (e.g. '
                        'the demo\'s); trained with the demo teacher config '
                        'when omitted')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--val-points', type=int, default=10)
    parser.add_argument('--md', help='per-cell table path (default '
                        'WORK_DIR/shampoo_epochs.md)')
    parser.add_argument('--dry-run', action='store_true')
    args = parser.parse_args(argv)
    result = run_shampoo_epochs(args.work_dir, args.data_root, args.epochs,
                                args.seeds, args.teacher, args.jobs,
                                args.val_points, args.md, args.dry_run)
    if 'summary' in result:
        print('\n' + result['summary'])
        for key, path in result['paths'].items():
            print(f'  {key}: {path}')
    return 1 if result.get('failed') else 0
