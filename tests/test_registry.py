"""register_in_mmrazor (mmfunmatch/registry.py): the package's models are
also in mmrazor's MODELS registry, and without mmrazor nothing fails.
(An mmrazor distiller training with KLDivergenceT: tests/test_compat.py.)"""
import sys

import torch.nn as nn
from mmpretrain.registry import MODELS
from mmrazor.registry import MODELS as RAZOR_MODELS

from mmfunmatch.registry import register_in_mmrazor


def test_the_package_models_are_in_both_registries():
    for name in ('FunMatchDistiller', 'KLDivergenceT'):
        assert RAZOR_MODELS.get(name) is MODELS.get(name), name
        assert RAZOR_MODELS.get(name).__module__.startswith('mmfunmatch.')


def test_register_in_mmrazor_registers_and_returns_the_class(monkeypatch):

    class _RegistryProbe(nn.Module):
        pass

    assert RAZOR_MODELS.get('_RegistryProbe') is None
    try:
        assert register_in_mmrazor(_RegistryProbe) is _RegistryProbe
        assert RAZOR_MODELS.get('_RegistryProbe') is _RegistryProbe
    finally:
        RAZOR_MODELS._module_dict.pop('_RegistryProbe', None)

    # mmrazor missing: the class comes back unregistered, no error.
    monkeypatch.setitem(sys.modules, 'mmrazor.registry', None)
    assert register_in_mmrazor(_RegistryProbe) is _RegistryProbe
    monkeypatch.undo()
    assert RAZOR_MODELS.get('_RegistryProbe') is None
