# The demo's FunMatch student with Shampoo instead of AdamW: the same
# teacher, data, views, mixup, learning rate, decay, clipping, warm-up and
# cosine schedule; only the optimizer differs. Shampoo keeps its defaults,
# which are the paper's appendix D (blocks of at most 128 x 128, inverse
# roots recomputed every step, Nesterov, RMSProp graft; see
# ../../_base_/schedules/shampoo_funmatch.py). `python tools/shampoo_epochs.py`
# compares the two optimizers at several schedule lengths.
_base_ = ['./digits_funmatch_student.py']

optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,
        type='Shampoo',
        lr={{_base_.student_lr}},
        # Torch's AdamW multiplies the weights by 1 - lr_t * (wd / lr);
        # Shampoo, with decay_scaled_by_lr=False (the default), by
        # 1 - wd * lr_t / lr: the same decay.
        weight_decay={{_base_.student_wd}}))
