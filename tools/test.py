"""Evaluate a checkpoint: `python tools/test.py CONFIG CHECKPOINT [flags]`."""
from mmfunmatch.apis.cli import evaluate

if __name__ == '__main__':
    evaluate()
