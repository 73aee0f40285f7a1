"""The three ways the FID tools bring an image to the FID network's 299x299 input in [-1, 1].

Each takes one uint8 3 x H x W image (as ``data.read_image`` returns it) and gives a float32
3 x 299 x 299 tensor; images of any size may be mixed in a folder (each is resized alone).

* ``pytorch-fid`` (``pytorch_fid.inception.InceptionV3(resize_input=True, normalize_input=True)``):
  ``x / 255``, ``F.interpolate(bilinear, align_corners=False)`` in float32, then ``2 x - 1``.
* ``torch-fidelity`` (``FeatureExtractorInceptionV3.forward``): the uint8 values as float32,
  TensorFlow 1.x's bilinear resize (``interpolate_bilinear_2d_like_tensorflow1x``, method "slow",
  ``align_corners=False``: source coordinate = output index * in / out, no half-pixel offset, the
  upper neighbour clamped at the border), then ``(x - 128) / 128``. This is what the original TF
  FID code fed the graph.
* ``clean`` (clean-fid's ``mode="clean"``, ``cleanfid.resize.make_resizer("PIL", False, "bicubic",
  (299, 299))``): each channel as a float32 PIL image (mode "F"), PIL's antialiased bicubic resize,
  clipped to [0, 255] and **not** quantized back to uint8, then ``(x - 128) / 128``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError

__all__ = ["RESIZE_MODES", "SIZE", "preprocess", "tf1_bilinear_resize"]

SIZE = 299
RESIZE_MODES = ("pytorch-fid", "torch-fidelity", "clean")


def tf1_bilinear_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """TensorFlow 1.x ``tf.image.resize_bilinear(align_corners=False)`` of a float N x C x H x W tensor,
    ported from torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` (method "slow", which
    its docs call bit-exact with TF on CPU; Apache-2.0, github.com/toshas/torch-fidelity). The order
    of the float32 operations is kept, so the result is bit-identical to torch-fidelity's."""
    if x.dim() != 4 or not torch.is_floating_point(x):
        raise ValueError(f"tf1_bilinear_resize takes a float N x C x H x W tensor, got {tuple(x.shape)}")
    out_h, out_w = size
    in_h, in_w = x.shape[2], x.shape[3]

    def grid(out: int, inp: int) -> tuple[Tensor, Tensor, Tensor]:
        # TF1 (align_corners=False): src = dst * in / out, the scale multiplied as a float32 tensor
        g = torch.arange(0, out, 1, dtype=x.dtype, device=x.device) * torch.tensor(
            inp / out, dtype=torch.float32
        )
        lo = g.long()
        hi = (lo + 1).clamp_max(inp - 1)
        return lo, hi, g - lo.float()

    x_lo, x_hi, dx = grid(out_w, in_w)
    y_lo, y_hi, dy = grid(out_h, in_h)
    top, bottom = x[:, :, y_lo, :], x[:, :, y_hi, :]
    in_00, in_01 = top[:, :, :, x_lo], top[:, :, :, x_hi]
    in_10, in_11 = bottom[:, :, :, x_lo], bottom[:, :, :, x_hi]
    in_0 = in_00 + (in_01 - in_00) * dx.view(1, 1, 1, out_w)
    in_1 = in_10 + (in_11 - in_10) * dx.view(1, 1, 1, out_w)
    return in_0 + (in_1 - in_0) * dy.view(1, 1, out_h, 1)


def _pil_bicubic_float(img: Tensor) -> Tensor:
    """clean-fid's resize: per channel, float32 PIL image, bicubic to 299x299, clipped to [0, 255]."""
    from PIL import Image

    arr = img.numpy()
    chans = [
        np.asarray(Image.fromarray(arr[c].astype(np.float32)).resize((SIZE, SIZE), Image.Resampling.BICUBIC))
        for c in range(arr.shape[0])
    ]
    return torch.from_numpy(np.stack(chans).clip(0, 255).astype(np.float32))


def preprocess(img: Tensor, mode: str) -> Tensor:
    """One uint8 3 x H x W image -> the FID network's float32 3 x 299 x 299 input in [-1, 1]."""
    if mode == "pytorch-fid":
        x = F.interpolate(img[None].float() / 255.0, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        return (2 * x - 1)[0]
    if mode == "torch-fidelity":
        x = tf1_bilinear_resize(img[None].float(), (SIZE, SIZE))
        return ((x - 128) / 128)[0]
    if mode == "clean":
        return (_pil_bicubic_float(img) - 128) / 128
    raise UsageError(f"--resize {mode!r}: expected one of {', '.join(RESIZE_MODES)}")
