# The digits demo's FunMatch student trained from a replay store: no
# teacher runs. First label (once; resumable):
#   python tools/label_teacher.py \
#       configs/funmatch/demo/digits_funmatch_student.py work_dirs/replay/digits
# then train any number of students from it:
#   python tools/train.py configs/funmatch/replay/digits_replay_student.py
# With --precision fp32 the student ends bitwise equal to the online one.
_base_ = ['../demo/digits_funmatch_student.py']

replay_store = 'work_dirs/replay/digits'
model = dict(type='ReplayDistiller', store=replay_store, cycle=False)
custom_hooks = [dict(type='ReplayStoreHook')]
