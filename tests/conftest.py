import os

import pytest

import mmfunmatch  # noqa: F401  (registers modules, applies compat)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_classifier(width: int = 4, num_classes: int = 10) -> dict:
    """A small mmpretrain classifier config for fast CPU tests."""
    return dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet_CIFAR', depth=18, base_channels=width),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=width * 8))


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """scikit-learn's digits written once per test session as an image
    folder."""
    from projects.funmatch_paper.digits import write_digits
    root = str(tmp_path_factory.mktemp('digits'))
    write_digits(root)
    return root
