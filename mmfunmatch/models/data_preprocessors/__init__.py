from .funmatch_preprocessor import FunMatchDataPreprocessor

__all__ = ['FunMatchDataPreprocessor']
