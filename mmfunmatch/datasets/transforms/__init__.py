from .consistent_view import ConsistentView
from .formatting import PackFunMatchInputs
from .loading import CorruptImageError, SafeLoadImageFromFile

__all__ = [
    'ConsistentView', 'PackFunMatchInputs', 'SafeLoadImageFromFile',
    'CorruptImageError'
]
