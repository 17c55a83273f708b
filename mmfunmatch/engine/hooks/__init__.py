from .checkpoint_hook import (CheckpointWriteError, SafeCheckpointHook,
                              find_resumable_checkpoint,
                              is_complete_checkpoint)
from .consistency_hook import RankConsistencyHook, state_digest
from .nonfinite_hook import NonFiniteError, NonFiniteGuardHook
from .preemption_hook import Preempted, PreemptionHook
from .resume_hook import ExactResumeHook

__all__ = [
    'SafeCheckpointHook', 'ExactResumeHook',
    'NonFiniteGuardHook', 'NonFiniteError', 'find_resumable_checkpoint',
    'is_complete_checkpoint', 'RankConsistencyHook', 'state_digest',
    'PreemptionHook', 'Preempted', 'CheckpointWriteError'
]
