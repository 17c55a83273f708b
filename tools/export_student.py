"""Export a function-matching student as a plain MMPretrain classifier.

    python tools/export_student.py CHECKPOINT OUT_DIR [--config CONFIG]

Writes OUT_DIR/student.pth and OUT_DIR/student_config.py, which
`mmpretrain.apis.init_model` and `ImageClassificationInferencer` load without
mmfunmatch.
"""
import argparse

from mmfunmatch.apis.export import export_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('out_dir')
    parser.add_argument('--config', help='the run config (default: the one '
                        'stored in the checkpoint)')
    args = parser.parse_args()
    weights, cfg = export_student(args.checkpoint, args.out_dir, args.config)
    print(f'student weights: {weights}\nstudent config:  {cfg}')


if __name__ == '__main__':
    main()
