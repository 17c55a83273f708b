"""Report on a teacher before distilling from it.

    python tools/teacher_report.py CONFIG [--checkpoint PATH] [--out DIR]

CONFIG is a plain mmpretrain classifier config (then --checkpoint is its
weights), e.g. configs/funmatch/demo/digits_teacher.py, or a
FunMatchDistiller config whose teachers[0] is reported. On the val split:
accuracy, NLL and ECE before and after a fitted temperature, the
label-smoothing fingerprint, the teacher on mixed images and at the
student's resolution, and a one-line verdict with the recommended tau.
Writes DIR/PREFIX.md, .json and PREFIX_*.png (PREFIX: teacher_report)
(library: mmfunmatch/evaluation/teacher_report.py).
"""
import argparse
from typing import List, Optional

from mmengine.config import DictAction

from mmfunmatch.evaluation.teacher_report import DEFAULT_LAMS, teacher_report


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Calibration, label-smoothing fingerprint and mixed-input '
        'behaviour of a teacher, with the recommended distillation tau.')
    parser.add_argument('config', help='classifier or FunMatchDistiller '
                        'config')
    parser.add_argument('--checkpoint', help='teacher weights (default: the '
                        'distiller config\'s teachers[0].checkpoint)')
    parser.add_argument('--out', default='work_dirs/teacher_report',
                        help='output folder (default work_dirs/'
                        'teacher_report)')
    parser.add_argument('--prefix', default='teacher_report',
                        help='output file name prefix')
    parser.add_argument('--lams', type=float, nargs='+',
                        default=list(DEFAULT_LAMS),
                        help='mixing weights to query (default 1 0.9 0.75 '
                        '0.5)')
    parser.add_argument('--student-size', type=int, nargs='+',
                        help='student input size (H [W]) for a plain config')
    parser.add_argument('--max-images', type=int,
                        help='use at most this many val images')
    parser.add_argument('--batch-size', type=int)
    parser.add_argument('--device', help='default: cuda when available')
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    size = args.student_size
    if size is not None:
        size = (size[0], size[-1])
    report = teacher_report(
        args.config, args.checkpoint, args.out, lams=args.lams,
        student_size=size, max_images=args.max_images,
        batch_size=args.batch_size, device=args.device,
        cfg_options=args.cfg_options, num_workers=args.num_workers,
        prefix=args.prefix)
    print(report['verdict'])
    print(f'report: {report["paths"]["markdown"]}')


if __name__ == '__main__':
    main()
