"""What a training run's distributed and precision settings can be, as plain data: the
command line offers them (``--kvstore``, ``--amp``) without importing MXNet, and the engine
checks against the same tuples."""

__all__ = ['KVSTORES', 'AMP_DTYPES']

KVSTORES = ('local', 'device', 'nccl', 'dist_sync', 'dist_device_sync')
AMP_DTYPES = ('float16', 'bfloat16')
