"""Teacher once, students many: a store of the exact training views and
the teachers' targets for them (see docs/replay.md)."""
from .distiller import ReplayDistiller, ReplayedTeacher
from .hook import ReplayStoreHook
from .label_loop import TeacherLabelLoop
from .store import (PRECISIONS, ReplayStore, ReplayStoreError,
                    bytes_per_view, decode_targets, encode_targets)
from .views import drawn_views, run_fingerprint

__all__ = [
    'ReplayDistiller', 'ReplayedTeacher', 'ReplayStoreHook',
    'TeacherLabelLoop', 'ReplayStore', 'ReplayStoreError', 'PRECISIONS',
    'bytes_per_view', 'decode_targets', 'encode_targets', 'drawn_views',
    'run_fingerprint'
]
