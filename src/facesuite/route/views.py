"""Gallery views: a clean gallery image re-rendered under a distortion that no restoration undoes.

An overexposed (``sunny``) face is clipped to white: the skin, nose and mouth are gone and only
dark structures survive (hair, brows, eyes, the outline, clothing). No filter or adapter brings the
lost pixels back (``routing/MODEL_CARD.md``), so the sunny route compares like with like instead:
the probe is matched against each gallery image *as it would look overexposed*, cut the way a
sunny probe is cut. Both sides then carry the same surviving cues.

The rendering reproduces FACECOM's ``sunny`` copies, measured on the 679 training identities
(``python benchmarks/sunny_view.py fit``): a glow centred on the image is *added* to the pixels
(a regression of sunny on clean pixels has slope ~1 away from the clipped core) and clipped at 255.
Its strength depends on the distance from the image centre in units of the face width: about +200
within half a face width, +140 at one face width, and a floor of +60 beyond two. Inside the face
chip the rendering is close to the real copies (``tests/test_views.py``: mean absolute error of the
chip under a fifth of the clean chip's); far outside it, studio frames with small faces get a glow
that FACECOM fades out, which the recogniser never sees.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from facesuite.registry import Registry

# Distance from the image centre (face widths) -> added brightness, the median over 200 training
# pairs of per-ring regressions of sunny on clean pixels (the intercepts; slopes were ~1).
_GLOW_DISTANCE = np.array([0.05, 0.55, 0.65, 0.75, 0.85, 0.95, 1.05, 1.15, 1.25, 1.35, 1.45, 1.55, 1.65, 1.75, 1.85, 1.95])
_GLOW_OFFSET = np.array([200, 196, 192, 180, 167, 154, 140, 127, 118, 107, 93, 81, 71, 64, 61, 60], dtype=np.float32)

Renderer = Callable[[np.ndarray, tuple[float, float, float, float]], np.ndarray]


def render_overexposed(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """``image`` (RGB uint8) with a FACECOM-style sun glow, sized by the face ``box`` (x1, y1, x2, y2)."""
    height, width = image.shape[:2]
    face_width = max(box[2] - box[0], 1.0)
    ys, xs = np.mgrid[:height, :width]
    distance = np.hypot(xs - width / 2, ys - height / 2) / face_width
    glow = np.interp(distance, _GLOW_DISTANCE, _GLOW_OFFSET).astype(np.float32)
    return np.clip(image.astype(np.float32) + glow[..., None], 0, 255).round().astype(np.uint8)


#: View renderers by name; a route names its view in ``routes.json`` (``"gallery_view"``).
VIEWS: Registry[Renderer] = Registry("gallery view")
VIEWS.register("sunny")(render_overexposed)
