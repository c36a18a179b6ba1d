"""Reports of a training run: plots of curves, confusion matrices, spectrograms and comparisons."""
