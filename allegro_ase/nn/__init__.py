"""Building blocks of the models, one job per module."""
