from .aux_head_accuracy import AuxHeadAccuracy
from .teacher_agreement import TeacherAgreement, agreement_stats

__all__ = ['TeacherAgreement', 'agreement_stats', 'AuxHeadAccuracy']
