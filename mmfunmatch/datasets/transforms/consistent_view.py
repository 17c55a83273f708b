import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from mmfunmatch.utils import to_hw

# A crop box in original-image pixels: (x0, y0, width, height).
Box = Tuple[int, int, int, int]

CROP_KINDS = ('ic', 'rc', 'cc', 'rs')

# mode -> (student crop, teacher crop, teacher shares the student's crop)
# The names and meanings follow the paper's figure 3 (see docs/method.md).
# In 'eval' the centre crop is deterministic, so "shared" only means equal
# boxes; a teacher with its own crop fraction gets its own centre crop.
MODES: Dict[str, Tuple[str, str, bool]] = {
    'same/ic': ('ic', 'ic', True),
    'same/rc': ('rc', 'rc', True),
    'ind/ic': ('ic', 'ic', False),
    'ind/rc': ('rc', 'rc', False),
    'fix/rs': ('rs', 'rs', True),
    'fix/cc': ('rc', 'cc', False),
    # Evaluation: one deterministic centre crop for every model.
    'eval': ('cc', 'cc', True),
}
MODE_ALIASES = {'funmatch': 'same/ic'}

INTERPOLATIONS = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
}


@TRANSFORMS.register_module()
class ConsistentView(BaseTransform):
    """One crop of the decoded image, rendered at every model's input size.

    The student's view goes to ``results['img']`` and one view per teacher to
    ``results['teacher_imgs']`` (a list, in the order of ``teacher_sizes``).
    The image is decoded once (by ``LoadImageFromFile`` before this
    transform); the crop box and flip are drawn once in the original image's
    pixels and each view is a resize of that same region, so a 160 px student
    and a 224 px teacher see the same content at their own resolution.

    Each distinct (box, flip, size) is rendered once: a teacher whose view
    would be the same pixels as an earlier one (e.g. a 224 px teacher of a
    224 px student in ``same/ic``) gets that very array object in
    ``teacher_imgs``, and ``PackFunMatchInputs`` packs it once. Transforms
    placed after this one that replace ``results['img']`` (rather than write
    into it) therefore leave the teachers' views as rendered.

    Crop kinds: ``ic`` inception crop (area fraction in ``scale``, aspect
    ratio in ``ratio``, random position), ``rc`` random square crop of side
    ``crop_frac`` x the short side, ``cc`` the same square at the centre,
    ``rs`` the whole image resized (aspect not kept). Random kinds (ic, rc)
    are flipped horizontally with probability ``flip_prob``; cc and rs never.

    ``mode`` selects who gets which crop, as in the paper's ablation:
    ``same/ic`` (function matching, alias ``funmatch``), ``same/rc``,
    ``ind/ic`` and ``ind/rc`` (teacher and student draw independent crops),
    ``fix/rs`` (both see the whole image resized), ``fix/cc`` (teacher a
    fixed centre crop, student a random crop) and ``eval`` (everyone the
    centre crop).

    ``teacher_crop_fracs`` gives a teacher its own crop fraction where the
    teacher has its own square crop: ``eval`` (e.g. 1.0 for a 384 px teacher
    published with a whole-image evaluation, while the student keeps 0.875),
    ``fix/cc`` and ``ind/rc``.

    Args:
        student_size (int | tuple): The student's input size.
        teacher_sizes (Sequence[int | tuple]): One input size per teacher.
            Defaults to () (student view only).
        mode (str): See above. Defaults to 'same/ic'.
        scale (tuple): Area fraction range of the inception crop.
            Defaults to (0.05, 1.0).
        ratio (tuple): Aspect ratio range of the inception crop.
            Defaults to (3/4, 4/3).
        crop_frac (float): Side of rc/cc squares relative to the short side
            (224 / 256 = 0.875 is the usual evaluation crop).
            Defaults to 0.875.
        teacher_crop_fracs (Sequence[float], optional): One crop fraction
            per teacher for its own rc/cc square (modes ``eval``, ``fix/cc``,
            ``ind/rc``). Defaults to None (every teacher uses ``crop_frac``).
        flip_prob (float): Probability of a horizontal flip for random crops.
            Defaults to 0.5.
        interpolation (str): 'nearest', 'bilinear', 'bicubic' or 'area'.
            Defaults to 'bilinear'.
        max_attempts (int): Tries to draw an inception box inside the image
            before falling back to the central crop. Defaults to 10.
    """

    def __init__(self,
                 student_size: Union[int, Sequence[int]],
                 teacher_sizes: Sequence[Union[int, Sequence[int]]] = (),
                 mode: str = 'same/ic',
                 scale: Tuple[float, float] = (0.05, 1.0),
                 ratio: Tuple[float, float] = (3. / 4., 4. / 3.),
                 crop_frac: float = 0.875,
                 teacher_crop_fracs: Optional[Sequence[float]] = None,
                 flip_prob: float = 0.5,
                 interpolation: str = 'bilinear',
                 max_attempts: int = 10) -> None:
        mode = MODE_ALIASES.get(mode, mode)
        if mode not in MODES:
            raise ValueError(
                f'ConsistentView: unknown mode {mode!r}; choose one of '
                f'{sorted(MODES) + sorted(MODE_ALIASES)}. The fix/ic_ens '
                f'baseline uses StoredTeacherDataset, not a transform mode.')
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'ConsistentView: interpolation must be one of '
                             f'{sorted(INTERPOLATIONS)}, got {interpolation!r}')
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f'ConsistentView: scale must satisfy '
                             f'0 < min <= max <= 1, got {scale}')
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f'ConsistentView: bad ratio range {ratio}')
        if not (0 < crop_frac <= 1):
            raise ValueError(
                f'ConsistentView: crop_frac must be in (0, 1], got {crop_frac}')
        self.mode = mode
        self.student_size = to_hw(student_size)
        self.teacher_sizes = [to_hw(s) for s in teacher_sizes]
        self.scale = scale
        self.ratio = ratio
        self.crop_frac = crop_frac
        self.teacher_crop_fracs = self._check_teacher_fracs(teacher_crop_fracs)
        self.flip_prob = flip_prob
        self.interpolation = interpolation
        self.max_attempts = max_attempts

    def _check_teacher_fracs(
            self, fracs: Optional[Sequence[float]]) -> List[float]:
        """One crop fraction per teacher, checked against the mode."""
        if fracs is None:
            return [self.crop_frac] * len(self.teacher_sizes)
        fracs = [float(f) for f in fracs]
        if len(fracs) != len(self.teacher_sizes):
            raise ValueError(
                f'ConsistentView: teacher_crop_fracs has {len(fracs)} '
                f'entries for {len(self.teacher_sizes)} teacher_sizes; give '
                f'one crop fraction per teacher.')
        for i, f in enumerate(fracs):
            if not 0 < f <= 1:
                raise ValueError(
                    f'ConsistentView: teacher_crop_fracs[{i}] must be in '
                    f'(0, 1], got {f}')
        _, teacher_kind, shared = MODES[self.mode]
        own_square = teacher_kind == 'cc' or (teacher_kind == 'rc'
                                              and not shared)
        if not own_square and any(f != self.crop_frac for f in fracs):
            raise ValueError(
                f'ConsistentView: teacher_crop_fracs={fracs} differ from '
                f'crop_frac={self.crop_frac}, but in mode {self.mode!r} the '
                f'teachers have no square crop of their own to apply them '
                f'to. Use them with mode \'eval\', \'fix/cc\' or '
                f'\'ind/rc\', or remove teacher_crop_fracs.')
        return fracs

    def drop_teacher_views(self) -> None:
        """Render the student's view only (a replay run reads the teachers'
        targets from its store). The student's box and flip are drawn
        first, so they stay the same."""
        self.teacher_sizes, self.teacher_crop_fracs = [], []

    # -- boxes ---------------------------------------------------------------
    def _square_side(self, h: int, w: int,
                     crop_frac: Optional[float] = None) -> int:
        frac = self.crop_frac if crop_frac is None else crop_frac
        return max(1, int(round(min(h, w) * frac)))

    def _inception_box(self, h: int, w: int) -> Box:
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.max_attempts):
            target = area * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*log_ratio))
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                x0 = np.random.randint(0, w - cw + 1)
                y0 = np.random.randint(0, h - ch + 1)
                return x0, y0, cw, ch
        # Fall back to the largest central crop within the ratio range.
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return (w - cw) // 2, (h - ch) // 2, cw, ch

    def draw_box(self,
                 kind: str,
                 h: int,
                 w: int,
                 crop_frac: Optional[float] = None) -> Tuple[Box, bool]:
        """Draw a crop box of the given kind and whether to flip it.

        ``crop_frac`` (rc/cc squares) defaults to ``self.crop_frac``.
        """
        if kind == 'rs':
            return (0, 0, w, h), False
        if kind == 'cc':
            side = self._square_side(h, w, crop_frac)
            return ((w - side) // 2, (h - side) // 2, side, side), False
        if kind == 'rc':
            side = self._square_side(h, w, crop_frac)
            box = (np.random.randint(0, w - side + 1),
                   np.random.randint(0, h - side + 1), side, side)
        else:
            box = self._inception_box(h, w)
        return box, bool(np.random.rand() < self.flip_prob)

    def render(self, img: np.ndarray, box: Box, flip: bool,
               size: Tuple[int, int]) -> np.ndarray:
        """Cut ``box`` out of ``img`` and resize it to ``size`` (h, w)."""
        x0, y0, cw, ch = box
        patch = img[y0:y0 + ch, x0:x0 + cw]
        if patch.shape[:2] != size:
            patch = cv2.resize(
                patch, (size[1], size[0]),
                interpolation=INTERPOLATIONS[self.interpolation])
        if flip:
            # The same pixels as patch[:, ::-1], written contiguously by
            # cv2 tens of times faster than numpy copies a reversed view.
            patch = cv2.flip(patch, 1)
        if patch.ndim == 2:  # cv2 drops a single channel axis
            patch = patch[..., None]
        return np.ascontiguousarray(patch)

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        student_kind, teacher_kind, shared = MODES[self.mode]
        box, flip = self.draw_box(student_kind, h, w)
        student_img = self.render(img, box, flip, self.student_size)
        # Render each distinct view once: the same box, flip and size give
        # the same pixels, so equal views share one array.
        rendered = {(box, flip, self.student_size): student_img}
        teacher_imgs: List[np.ndarray] = []
        teacher_boxes: List[Box] = []
        for size, frac in zip(self.teacher_sizes, self.teacher_crop_fracs):
            if shared and frac == self.crop_frac:
                t_box, t_flip = box, flip
            else:
                t_box, t_flip = self.draw_box(teacher_kind, h, w, frac)
            key = (t_box, t_flip, size)
            if key not in rendered:
                rendered[key] = self.render(img, t_box, t_flip, size)
            teacher_imgs.append(rendered[key])
            teacher_boxes.append(t_box)
        results['img'] = student_img
        results['teacher_imgs'] = teacher_imgs
        results['img_shape'] = results['img'].shape[:2]
        results['crop_bbox'] = box
        results['flip'] = flip
        results['teacher_crop_bboxes'] = teacher_boxes
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mode={self.mode!r}, '
                f'student_size={self.student_size}, '
                f'teacher_sizes={self.teacher_sizes}, '
                f'crop_frac={self.crop_frac}, '
                f'teacher_crop_fracs={self.teacher_crop_fracs}, '
                f'interpolation={self.interpolation!r})')
