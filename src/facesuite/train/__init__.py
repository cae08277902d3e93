"""Training loops for facesuite's models; each task has its own module."""
