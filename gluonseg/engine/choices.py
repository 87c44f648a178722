"""What a run's devices, distributed and precision settings can be, in plain Python: the
command line offers and checks them (``--gpus``, ``--kvstore``, ``--amp``) without importing
MXNet, and the engine reads the same definitions."""

__all__ = ['KVSTORES', 'AMP_DTYPES', 'gpu_ids']

KVSTORES = ('local', 'device', 'nccl', 'dist_sync', 'dist_device_sync')
AMP_DTYPES = ('float16', 'bfloat16')


def gpu_ids(gpus):
    """The GPU indices of a ``--gpus`` value such as ``'0,1'`` (``''``: none, the CPU)."""
    return [int(i) for i in gpus.split(',') if i.strip()]
