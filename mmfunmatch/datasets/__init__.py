from .transforms import *  # noqa: F401,F403
from .stored_teacher import StoredTeacherDataset  # noqa: F401
