"""Datasets and transforms for segmentation."""
