"""Image-distortion analysis: a small CNN that names the distortion of a face photo, and synthesis.

    from facesuite.distortion.detector import DistortionDetector
    detector = DistortionDetector.load()                 # the shipped model
    label, probability, probs = detector.predict([image])[0]

Labels are ``clean`` plus FACECOM's seven distortion types (:data:`LABELS`). Synthesis of those
types from clean images lives in :mod:`facesuite.distortion.synth`.
"""

from facesuite.data import DISTORTIONS

LABELS: tuple[str, ...] = ("clean", *DISTORTIONS)
