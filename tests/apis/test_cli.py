"""tools/train.py's command line: a bad config ends with its message and
exit code 2, no traceback and no work started."""
import os
import os.path as osp
import subprocess
import sys

from mmfunmatch.apis.cli import EXIT_CONFIG
from tests.conftest import REPO


def test_config_error_exits_with_the_message_only(tmp_path):
    work_dir = tmp_path / 'work'
    missing = tmp_path / 'no_teacher.pth'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'),
         osp.join(REPO, 'configs', 'funmatch', 'demo',
                  'digits_funmatch_student.py'),
         '--work-dir', str(work_dir), '--cfg-options',
         f'model.teachers.0.checkpoint={missing}'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_CONFIG == 2, proc.stderr[-3000:]
    assert 'config error' in proc.stderr and str(missing) in proc.stderr
    assert 'Traceback' not in proc.stderr
    # Nothing was started: no work directory content.
    assert not work_dir.exists() or not os.listdir(work_dir)
