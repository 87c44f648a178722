"""Placeholder replaced by the CUDA preload module."""


def preload_cuda_libraries():
    return []
