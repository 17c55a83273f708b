from .consistent_view import ConsistentView
from .formatting import PackFunMatchInputs

__all__ = ['ConsistentView', 'PackFunMatchInputs']
