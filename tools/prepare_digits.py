"""Write scikit-learn's digits as an image folder: `tools/prepare_digits.py ROOT`."""
import argparse

from mmfunmatch.datasets.digits import write_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('root', nargs='?', default='data/digits')
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--small-per-class', type=int, default=20)
    args = parser.parse_args()
    counts = write_digits(args.root, args.size, args.small_per_class)
    print(f'digits written to {args.root}: {counts}')


if __name__ == '__main__':
    main()
