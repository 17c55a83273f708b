import copy
import io
import logging
import multiprocessing
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageOps


class CorruptImageError(OSError):
    """An image file that cannot be decoded completely; the message names
    the file and the fix."""


def decode_image(data: bytes,
                 alpha_background: Optional[Tuple[int, int, int]] = None,
                 ignore_orientation: bool = False) -> np.ndarray:
    """Decode a whole image file to an RGB uint8 array (H, W, 3).

    Every pixel is decoded (``Image.load``), so a truncated file raises
    instead of coming back part grey as OpenCV returns it. Grey, palette,
    CMYK, 16-bit and float images are converted to 8-bit RGB; alpha is
    dropped (as OpenCV's ``IMREAD_COLOR`` does) or composited onto
    ``alpha_background``.
    """
    img = Image.open(io.BytesIO(data))
    img.load()
    if not ignore_orientation:
        img = ImageOps.exif_transpose(img)
    if img.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N'):
        arr = np.asarray(img, dtype=np.float64)  # 16-bit range
        img = Image.fromarray(np.clip(arr / 257.0, 0, 255).round().astype(
            np.uint8))
    elif img.mode == 'F':
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    if img.mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    has_alpha = img.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La')
    if has_alpha and alpha_background is not None:
        rgba = img.convert('RGBA')
        canvas = Image.new('RGBA', rgba.size,
                           tuple(alpha_background) + (255, ))
        img = Image.alpha_composite(canvas, rgba)
    return np.asarray(img.convert('RGB'), dtype=np.uint8)


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(BaseTransform):
    """Load an image, converting any colour mode and refusing (or skipping)
    files that do not decode completely.

    A drop-in for ``LoadImageFromFile`` (same output: ``img`` as uint8
    H x W x 3 in BGR order, ``img_shape``, ``ori_shape``). Differences: the
    whole file is decoded with Pillow, so truncated files fail instead of
    decoding part grey; grey, palette, RGBA, CMYK and 16-bit files become
    3-channel 8-bit images.

    By default a file that cannot be decoded stops the run with
    :class:`CorruptImageError` naming it. With ``skip_corrupt=True`` the
    transform logs the file, counts it (across dataloader workers) and
    returns None, upon which mmengine's ``BaseDataset`` loads another random
    sample of the train set in its place. Use it in train pipelines only
    (mmengine refuses None at test time).

    Required Keys: img_path. Added Keys: img, img_shape, ori_shape.

    Args:
        skip_corrupt (bool): Skip undecodable files instead of stopping.
            Defaults to False.
        to_float32 (bool): Return a float32 image. Defaults to False.
        channel_order (str): 'bgr' (as OpenCV decodes, what mmpretrain's
            preprocessors expect with ``to_rgb=True``) or 'rgb'.
            Defaults to 'bgr'.
        alpha_background (tuple[int], optional): RGB colour to composite
            transparent pixels onto; None drops alpha. Defaults to None.
        ignore_orientation (bool): Ignore the EXIF orientation.
            Defaults to False.
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self,
                 skip_corrupt: bool = False,
                 to_float32: bool = False,
                 channel_order: str = 'bgr',
                 alpha_background: Optional[Tuple[int, int, int]] = None,
                 ignore_orientation: bool = False,
                 backend_args: Optional[dict] = None) -> None:
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f'channel_order must be "bgr" or "rgb", got '
                             f'{channel_order!r}')
        self.skip_corrupt = skip_corrupt
        self.to_float32 = to_float32
        self.channel_order = channel_order
        self.alpha_background = alpha_background
        self.ignore_orientation = ignore_orientation
        self.backend_args = backend_args
        # Shared with forked/spawned dataloader workers.
        self._skipped = multiprocessing.Value('l', 0)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far, in every worker of this dataset."""
        return int(self._skipped.value)

    def __deepcopy__(self, memo):
        # The counter is shared memory: copies count into the same one.
        new = copy.copy(self)
        memo[id(self)] = new
        return new

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            data = fileio.get(filename, backend_args=self.backend_args)
            img = decode_image(data, self.alpha_background,
                               self.ignore_orientation)
        except FileNotFoundError:
            raise
        except Exception as err:  # PIL raises OSError, SyntaxError, ...
            if not self.skip_corrupt:
                raise CorruptImageError(
                    f'cannot decode image {filename}: '
                    f'{type(err).__name__}: {err}. Remove or re-encode the '
                    f'file, or set skip_corrupt=True in SafeLoadImageFromFile'
                    f' to skip such files.') from err
            with self._skipped.get_lock():
                self._skipped.value += 1
                count = self._skipped.value
            print_log(
                f'skipped corrupt image {filename} ({type(err).__name__}: '
                f'{err}); {count} skipped so far', logger='current',
                level=logging.WARNING)
            return None
        if self.channel_order == 'bgr':
            img = np.ascontiguousarray(img[..., ::-1])
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(skip_corrupt={self.skip_corrupt}'
                f', channel_order={self.channel_order!r}, '
                f'to_float32={self.to_float32})')
