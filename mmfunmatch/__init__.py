"""mmfunmatch: knowledge distillation by function matching for OpenMMLab.

Importing the package applies the pinned stack's workarounds
(:mod:`mmfunmatch.compat`) and registers every component in mmpretrain's
(and, where it applies, mmrazor's and mmengine's) registries, so a config
only needs ``custom_imports=dict(imports=['mmfunmatch'])``.
"""
from . import compat

compat.apply()

from .datasets import *  # noqa: E402,F401,F403
from .engine import *  # noqa: E402,F401,F403
from .evaluation import *  # noqa: E402,F401,F403
from .models import *  # noqa: E402,F401,F403
from .apis import *  # noqa: E402,F401,F403  (CheckedRunner, validate_config)
from .replay import *  # noqa: E402,F401,F403  (replay store)

__version__ = '0.1.0'
