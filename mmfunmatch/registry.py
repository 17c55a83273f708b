"""Registration helpers: mmfunmatch's classes live in mmpretrain's registries.

Losses and the distiller are also placed in mmrazor's MODELS registry so that
``default_scope='mmrazor'`` configs can name them.
"""
from typing import Type


def register_in_mmrazor(cls: Type) -> Type:
    """Register ``cls`` in mmrazor's MODELS registry when mmrazor imports."""
    try:
        from mmrazor.registry import MODELS as RAZOR_MODELS
    except ImportError:  # mmrazor is optional at run time
        return cls
    RAZOR_MODELS.register_module(module=cls, force=True)
    return cls
