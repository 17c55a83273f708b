"""Benchmark a function-matching config's training step.

    python tools/benchmark.py CONFIG [--iters N] [--warmup W]
        [--batch-size B] [--photo-data N] [--cfg-options k=v ...]

Prints markdown tables: images/s, the step split into data wait, teacher
forward, student forward+backward and optimizer, peak memory, the ratio to a
hand-written PyTorch loop doing the same work, teacher fp32 against the fast
path, ConsistentView against two independent pipelines and, on a known GPU,
the MFU. See mmfunmatch/apis/benchmark.py and docs/benchmarks.md.

Examples::

    # the digits demo (random teacher weights: timing does not need them)
    python tools/benchmark.py \
        configs/funmatch/demo/digits_funmatch_student.py \
        --cfg-options model.teachers.0.checkpoint=None
    # BiT R152x2 -> R50x1 at 64 px, batch 4, on 64 generated photographs
    python tools/benchmark.py configs/funmatch/r50_bit152x2_imagenet.py \
        --batch-size 4 --photo-data 64 --cfg-options \
        model.teachers.0.checkpoint=None model.teachers.0.size=64 \
        train_dataloader.dataset.pipeline.1.student_size=64 \
        train_dataloader.dataset.pipeline.1.teacher_sizes=[64]
"""
import argparse
import json
import tempfile

from mmengine.config import Config, DictAction

import mmfunmatch  # noqa: F401  (registers everything, applies compat)
from mmfunmatch.apis.benchmark import benchmark, format_report, write_photos


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark the training step of a FunMatch config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed iterations per pass')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed iterations before each pass')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='override the train batch size')
    parser.add_argument(
        '--photo-data', type=int, default=0, metavar='N',
        help='train on N generated 500x375 JPEG photographs instead of the '
        'config\'s data set (e.g. when ImageNet is not at hand)')
    parser.add_argument('--cv-images', type=int, default=16,
                        help='photographs for the ConsistentView comparison')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='device peak TFLOP/s for the MFU (known GPUs '
                        'are looked up)')
    parser.add_argument('--work-dir', default=None,
                        help='runner work directory (logs only)')
    parser.add_argument('--json', default=None,
                        help='also write the raw report to this file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. '
        'model.teachers.0.checkpoint=None)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    with tempfile.TemporaryDirectory() as tmp:
        photo_dir = None
        if args.photo_data:
            photo_dir = tmp
            write_photos(tmp, args.photo_data)
        report = benchmark(
            cfg, iters=args.iters, warmup=args.warmup,
            batch_size=args.batch_size, photo_dir=photo_dir,
            cv_images=args.cv_images,
            peak_flops=(args.peak_tflops * 1e12
                        if args.peak_tflops else None),
            work_dir=args.work_dir or tempfile.mkdtemp(
                prefix='mmfunmatch_bench_'))
    print(format_report(report))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)


if __name__ == '__main__':
    main()
