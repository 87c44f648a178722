"""Training on several devices and machines: the kvstore that sums the gradients, the sums of
other numbers over the workers, and the workers' common start.

Several machines (``kvstore='dist_sync'`` or ``'dist_device_sync'``, each process started as a
worker of MXNet's parameter server): every worker takes its slice of each batch of the shared
``(seed, epoch)`` order, the gradients (and the few numbers the loss needs, such as the
labelled-pixel count of the whole batch: :class:`WorkerSums`) are summed over the workers
before every worker applies the same update, and every worker starts from worker 0's weights
(:func:`share_initial_weights`).
"""
import os

import mxnet as mx

from ..utils.mxnet_compat import init_kvstore_now
from .choices import KVSTORES

__all__ = ['KVSTORES', 'create_kvstore', 'WorkerSums', 'share_initial_weights']

#: The ``kvstore`` settings: how gradients are summed across devices (``local``: on the CPU,
#: ``device``: on the devices, ``nccl``: NCCL between GPUs) and across machines (``dist_sync``,
#: ``dist_device_sync``: through MXNet's parameter server, synchronously).


def create_kvstore(name, ctx):
    """What ``gluon.Trainer`` gets as ``kvstore`` for the setting ``name`` and the devices
    ``ctx``, with this process's rank and the number of workers.

    Returns
    -------
    (str or KVStore or None, int, int)
        A dist kvstore is created here (it tells the rank); the others are created by the
        Trainer, which uses none for a single device.
    """
    if name is None:
        return ('device' if len(ctx) > 1 else None), 0, 1
    if name not in KVSTORES:
        raise ValueError('Unknown kvstore %r; choose one of %s' % (name, ', '.join(KVSTORES)))
    features = mx.runtime.Features()
    if name == 'nccl':
        if any(c.device_type != 'gpu' for c in ctx):
            raise ValueError("kvstore 'nccl' sums gradients between GPUs, but the devices are "
                             "%s; use 'device' or 'local' on CPUs"
                             % ', '.join(str(c) for c in ctx))
        if not features.is_enabled('NCCL'):
            raise ValueError("kvstore 'nccl' needs an MXNet built with NCCL; this one is not "
                             "(use 'device')")
    if name.startswith('dist'):
        if not features.is_enabled('DIST_KVSTORE'):
            raise ValueError('kvstore %r needs an MXNet built with the distributed kvstore '
                             '(DIST_KVSTORE); this one is not' % name)
        if os.environ.get('DMLC_ROLE') != 'worker':
            raise ValueError(
                'kvstore %r trains as one worker of a parameter-server job: start this process '
                'with DMLC_ROLE=worker, DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT, DMLC_NUM_SERVER '
                'and DMLC_NUM_WORKER set, along with the scheduler and the servers (MXNet\'s '
                'tools/launch.py does it; see docs/training.md, "Several machines")' % name)
        kv = mx.kv.create(name)
        return kv, kv.rank, kv.num_workers
    return name, 0, 1


class WorkerSums(object):
    """Sums of python numbers over the workers of a dist kvstore.

    Parameters
    ----------
    kvstore : KVStore or str or None
        What :func:`create_kvstore` returned.
    num_workers : int
    first_free_key : int
        The first kvstore key the ``gluon.Trainer`` leaves free (it numbers its parameters'
        keys from 0).
    """

    def __init__(self, kvstore, num_workers, first_free_key):
        self.kvstore = kvstore
        self.num_workers = num_workers
        self.first_free_key = first_free_key
        self._keys = {}  # length of the summed list -> its kvstore key

    def __call__(self, values):
        """The sums over the workers of ``values`` (python numbers), as a list; ``values``
        itself when there is one worker."""
        if self.num_workers == 1:
            return list(values)
        # Every worker makes the same calls in the same order, so a key first used here is
        # initialized by all of them at once (kvstore.init is collective).
        key = self._keys.get(len(values))
        if key is None:
            key = self._keys[len(values)] = self.first_free_key + len(self._keys)
            self.kvstore.init(key, mx.nd.zeros(len(values)))
        array = mx.nd.array(values)
        self.kvstore.pushpull(key, array, out=array)
        return array.asnumpy().tolist()


def share_initial_weights(trainer):
    """Give every worker worker 0's weights (as the kvstore holds them) before the first
    update of the ``gluon.Trainer``, and wait until they are in place.

    gluon.Trainer does it lazily inside its first ``step()``. There, on CPU contexts, MXNet
    1.9.1's dist kvstore can send the first gradient sum before the weights' pull
    (``KVStoreDist::PushPullImpl`` replaces the key's buffer by the gradient array, which drops
    the ordering of the two), and a worker then starts from the summed gradients instead of the
    weights (seen in tests/test_dist_kvstore.py on a busy machine).
    """
    init_kvstore_now(trainer)
    mx.nd.waitall()
