# Stage 2 of the pets temperature sweep: the student from the store of
# r50_bit152x2_pets_128px_300_ep_label.py, the temperature applied at loss
# time. One run per T, no teacher forward in any:
#   for T in 1 2 5 10; do python tools/train.py \
#       configs/funmatch/replay/r50_bit152x2_pets_128px_300_ep_replay.py \
#       --work-dir work_dirs/pets_replay_T$T \
#       --cfg-options model.distill_loss.tau=$T; done
# (lr and wd too: the paper's pets best at 300 epochs is T 2, lr 1e-2,
# wd 1e-5.)
_base_ = ['./r50_bit152x2_pets_128px_300_ep_label.py']

replay_store = 'data/replay/r152x2_pets_128'
model = dict(type='ReplayDistiller', store=replay_store)
custom_hooks = [dict(type='ReplayStoreHook')]
