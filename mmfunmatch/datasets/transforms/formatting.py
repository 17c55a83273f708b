from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackFunMatchInputs(PackInputs):
    """Pack the student's view and every teacher's view for the model.

    Behaves like mmpretrain's ``PackInputs`` and, when ``ConsistentView`` has
    put teacher views into ``results['teacher_imgs']``, packs the inputs as
    ``dict(student=CHW tensor, teachers=[CHW tensor, ...])`` so that
    ``FunMatchDataPreprocessor`` can normalise each view for its own model.
    Without teacher views the output equals ``PackInputs``'s.

    Args:
        teacher_key (str): Results key holding the teacher views.
            Defaults to 'teacher_imgs'.
        **kwargs: Passed to ``PackInputs`` (input_key, algorithm_keys,
            meta_keys).
    """

    def __init__(self, teacher_key: str = 'teacher_imgs', **kwargs) -> None:
        super().__init__(**kwargs)
        self.teacher_key = teacher_key

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        teacher_imgs = results.get(self.teacher_key)
        if teacher_imgs:
            packed['inputs'] = dict(
                student=packed['inputs'],
                teachers=[self.format_input(t) for t in teacher_imgs])
        return packed
