from .param_groups import (FunMatchOptimWrapperConstructor, decay_groups,
                           trainable_module)

__all__ = [
    'FunMatchOptimWrapperConstructor', 'decay_groups', 'trainable_module'
]
