"""The distortion types facesuite knows, and their synthesis from clean images.

Labels are ``clean`` plus FACECOM's seven distortion types (:data:`LABELS`). The detector that
names a photo's distortion is :mod:`facesuite.classify.distortion`; what each type's face goes
through is :mod:`facesuite.route`; synthesis is :mod:`facesuite.distortion.synth`.
"""

from facesuite.data import DISTORTIONS

LABELS: tuple[str, ...] = ("clean", *DISTORTIONS)
