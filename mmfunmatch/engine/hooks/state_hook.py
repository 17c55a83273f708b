from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _batch_augment(runner):
    model = getattr(runner.model, 'module', runner.model)
    preprocessor = getattr(model, 'data_preprocessor', None)
    augment = getattr(preprocessor, 'batch_augment', None)
    return augment if hasattr(augment, 'state_dict') else None


@HOOKS.register_module()
class FunMatchStateHook(Hook):
    """Save and restore the batch augment's random generator with each
    checkpoint, so a resumed run draws the same mixup weights as an
    uninterrupted one.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        augment = _batch_augment(runner)
        if augment is not None:
            checkpoint['funmatch_batch_augment'] = augment.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        augment = _batch_augment(runner)
        state = checkpoint.get('funmatch_batch_augment')
        if augment is not None and state is not None:
            augment.load_state_dict(state)
