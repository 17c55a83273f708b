from .batch_augments import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .algorithms import *  # noqa: F401,F403
from .bit import load_bit_npz  # noqa: F401
