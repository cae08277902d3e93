"""Evaluation: metrics (scikit-learn) and their plots (matplotlib); the pages are :mod:`facesuite.report`."""
