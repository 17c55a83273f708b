"""Train with MMEngine's runner: `python tools/train.py CONFIG [flags]`.

Flags as MMPretrain's tools/train.py; see mmfunmatch/apis/cli.py.
"""
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmfunmatch.apis.cli import train_config


def main() -> None:
    cfg = train_config()
    runner = (RUNNERS.build(cfg) if 'runner_type' in cfg else
              Runner.from_cfg(cfg))
    runner.train()


if __name__ == '__main__':
    main()
