"""Utilities: downloads, metrics, visualization."""
