from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackFunMatchInputs(PackInputs):
    """Pack the student's view and every teacher's view for the model.

    Behaves like mmpretrain's ``PackInputs`` and, when ``ConsistentView`` has
    put teacher views into ``results['teacher_imgs']``, packs the inputs as
    ``dict(student=CHW tensor, teachers=[CHW tensor | int, ...])`` so that
    ``FunMatchDataPreprocessor`` can normalise each view for its own model.
    Without teacher views the output equals ``PackInputs``'s.

    Each distinct view is packed once. A teacher view that is the very array
    of an earlier view (``ConsistentView`` renders equal views once) is
    packed as the int ``j`` of the view it reads, counting the student's as
    0 and teacher ``k``'s as ``k + 1``; the preprocessor resolves it after
    moving the batch to the device, so the same pixels are neither copied,
    collated, pinned nor transferred twice.

    The metainfo also keeps ``ConsistentView``'s ``crop_bbox`` (beside
    ``PackInputs``'s ``flip``): a replay store records and checks them.

    Args:
        teacher_key (str): Results key holding the teacher views.
            Defaults to 'teacher_imgs'.
        **kwargs: Passed to ``PackInputs`` (input_key, algorithm_keys,
            meta_keys).
    """

    DEFAULT_META_KEYS = PackInputs.DEFAULT_META_KEYS + ('crop_bbox', )

    def __init__(self, teacher_key: str = 'teacher_imgs', **kwargs) -> None:
        kwargs.setdefault('meta_keys', self.DEFAULT_META_KEYS)
        super().__init__(**kwargs)
        self.teacher_key = teacher_key

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        teacher_imgs = results.get(self.teacher_key)
        if teacher_imgs:
            # Identity, not equality: only an array ConsistentView handed to
            # both is known to hold the same pixels (and costs nothing to
            # check); a later transform that replaced one breaks the link.
            views = [results.get(self.input_key)]
            teachers = []
            for img in teacher_imgs:
                index = next(
                    (j for j, v in enumerate(views) if v is img), None)
                teachers.append(
                    self.format_input(img) if index is None else index)
                views.append(img)
            packed['inputs'] = dict(student=packed['inputs'],
                                    teachers=teachers)
        return packed
