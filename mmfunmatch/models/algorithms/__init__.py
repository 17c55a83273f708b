from .funmatch_distiller import (FunMatchDistiller, combine_teachers,
                                 num_classes_of)

__all__ = ['FunMatchDistiller', 'combine_teachers', 'num_classes_of']
