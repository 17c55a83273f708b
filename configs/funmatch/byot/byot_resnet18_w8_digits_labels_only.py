# The control for byot_resnet18_w8_digits.py: the same network with the same
# auxiliary heads, every head trained from the labels alone (no KL to the
# deepest head, no feature term; "deep supervision"). The shallow heads'
# accuracy here against BYOT's shows what the self-distillation terms add.
_base_ = ['./byot_resnet18_w8_digits.py']

model = dict(alpha=0.0, feature_weight=0.0)
