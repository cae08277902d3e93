"""Evaluation: metrics (scikit-learn), plots (matplotlib) and self-contained HTML reports."""
