"""facesuite: face detection, recognition, verification, gender and distortion analysis."""

__version__ = "0.1.0"
