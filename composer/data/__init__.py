"""Datasets: built-in loaders, file sources, the synthetic default data and preprocessing."""
