"""The distortion types facesuite knows, and their synthesis from clean images.

Labels are ``clean`` plus FACECOM's seven distortion types (:data:`LABELS`). The detector that
names a photo's distortion is :mod:`facesuite.classify.distortion`; what each type's face goes
through is :mod:`facesuite.route`; synthesis is :mod:`facesuite.distortion.synth`.
"""

from facesuite.data import DISTORTIONS

LABELS: tuple[str, ...] = ("clean", *DISTORTIONS)

#: What of a photo the detector's network reads: ``photo``, the photo as it is (a portrait framed
#: like FACECOM's frames); ``face``, the square around the detected face
#: (:func:`facesuite.classify.distortion_input.face_frame`), so a photo cropped tight around the
#: face and a wide portrait are read at the same face scale.
FRAMINGS: tuple[str, ...] = ("photo", "face")
