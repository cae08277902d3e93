"""Face attribute classifiers (gender) on aligned face chips."""
