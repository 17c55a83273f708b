"""Evaluate a checkpoint: `python tools/test.py CONFIG CHECKPOINT [flags]`."""
import json

from mmengine.runner import Runner

from mmfunmatch.apis.cli import test_config


def main() -> None:
    cfg, out = test_config()
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if out and runner.rank == 0:
        with open(out, 'w') as f:
            json.dump(metrics, f, indent=1)


if __name__ == '__main__':
    main()
