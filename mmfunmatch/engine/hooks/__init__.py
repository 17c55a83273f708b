from .state_hook import FunMatchStateHook

__all__ = ['FunMatchStateHook']
