from .batch_augments import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .algorithms import *  # noqa: F401,F403
from .bit import (FunMatchTimmClassifier, TimmHeadInit,  # noqa: F401
                  load_bit_npz)
