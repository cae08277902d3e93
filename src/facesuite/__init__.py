"""facesuite: face detection, recognition, verification, gender and distortion analysis.

    from facesuite import FaceAnalysis

    app = FaceAnalysis()
    for face in app.get("photo.jpg"):      # a path, bytes, an RGB numpy array or a PIL image
        print(face.box, face.distortion, face.gender, face.p_female)

The models load when :class:`FaceAnalysis` is made; importing this package loads none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facesuite.errors import InputError, Skipped

__version__ = "0.1.0"
__all__ = ["Face", "FaceAnalysis", "InputError", "Skipped", "Verification", "__version__"]

if TYPE_CHECKING:
    from facesuite.analysis import Face, FaceAnalysis, Verification


def __getattr__(name: str):
    # The analysis module imports torch and the model code: only when a user asks for it, so
    # `import facesuite` (and every CLI start) stays light.
    if name in ("Face", "FaceAnalysis", "Verification"):
        from facesuite import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'facesuite' has no attribute {name!r}")
