from .baselines import LabelOnlyStudent, StoredTargetDistiller
from .byot import AuxHead, BYOTClassifier
from .funmatch_distiller import (FunMatchDistiller, combine_teachers,
                                 num_classes_of)

__all__ = [
    'FunMatchDistiller', 'LabelOnlyStudent', 'StoredTargetDistiller',
    'combine_teachers', 'num_classes_of', 'BYOTClassifier', 'AuxHead'
]
