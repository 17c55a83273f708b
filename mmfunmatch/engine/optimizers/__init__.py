from .param_groups import (FunMatchOptimWrapperConstructor, decay_groups,
                           trainable_module)
from .shampoo import Shampoo

__all__ = [
    'FunMatchOptimWrapperConstructor', 'decay_groups', 'trainable_module',
    'Shampoo'
]
