"""Attribute classifiers: gender (on aligned face chips or the recognition pass) and the distortion
detector (on the whole frame)."""
