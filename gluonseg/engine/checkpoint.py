"""Training checkpoints: whole or absent, with everything a resumed run needs.

A checkpoint is one zip file (stored, not compressed) holding

- ``weights.params``: the network's parameters in MXNet's ``save_parameters`` format (extract it
  and ``net.load_parameters`` it directly, or use :func:`load_weights_from`);
- ``trainer.states``: the optimizer and its per-parameter states (momentum), as written by
  ``gluon.Trainer.save_states``;
- ``meta.json``: epoch, iteration, learning-rate scheduler position, best score, RNG states
  (python ``random``, numpy's global generator, the MXNet seed scheme), the model's name and
  constructor arguments and the run's arguments; with optimizer states, their layout
  (``optimizer_layout``, see :func:`optimizer_layout`).

The optimizer states are numbered by the parameters' places in the list the ``gluon.Trainer``
was given, not by name, so they are only resumed into a trainer whose parameters have the
recorded layout.

It is written to a temporary file in the destination folder, flushed to disk, then moved over
the destination with ``os.replace``; a crash at any point leaves either the previous file or the
new one, never a partial file (and the temporary file is removed on errors). Weights or
optimizer states holding a NaN or an infinity are refused before anything is written.
"""
import json
import os
import random
import tempfile
import time
import zipfile

import mxnet as mx
import numpy as np

from ..model_zoo.registry import UnknownModelError, get_model, load_weights
from ..utils.atomic import atomic_copy, publish, remove_quietly, temp_path_beside
from ..utils.mxnet_compat import load_into_parameter, structural_params, trainer_params
from .guards import (NonFiniteError, all_finite, first_names, nonfinite_names,
                     optimizer_state_arrays, parameter_arrays)

__all__ = ['CHECKPOINT_FORMAT', 'Checkpoint', 'CheckpointError', 'save_checkpoint',
           'load_checkpoint', 'atomic_copy', 'optimizer_layout', 'seed_everything',
           'capture_rng_state', 'restore_rng_state', 'load_weights_from', 'initialize_from',
           'weight_file_kind', 'checkpoint_task']

CHECKPOINT_FORMAT = 'gluonseg-checkpoint-1'
_META, _WEIGHTS, _TRAINER = 'meta.json', 'weights.params', 'trainer.states'


class CheckpointError(IOError):
    """A checkpoint file cannot be read (missing, truncated, not a checkpoint, incomplete)."""


class Checkpoint(object):
    """A loaded checkpoint.

    Attributes
    ----------
    path : str
    meta : dict
        Everything of ``meta.json`` (``epoch``, ``iteration``, ``lr_scheduler``, ``best``,
        ``rng``, ``model``, ``args``, ...).
    """

    def __init__(self, path, meta, weights_bytes, trainer_bytes):
        self.path = path
        self.meta = meta
        self._weights_bytes = weights_bytes
        self._trainer_bytes = trainer_bytes

    def __getitem__(self, key):
        return self.meta[key]

    def get(self, key, default=None):
        return self.meta.get(key, default)

    @property
    def has_trainer_states(self):
        return self._trainer_bytes is not None

    def weights(self):
        """``{parameter name: NDArray}`` on the CPU."""
        return mx.nd.load_frombuffer(self._weights_bytes)

    def load_into(self, net, ctx=mx.cpu()):
        """Load the weights into ``net`` strictly (same names and shapes, none missing)."""
        with _spilled(self._weights_bytes, self.path) as fname:
            load_weights(net, fname, ctx=ctx)

    def check_trainer(self, trainer, net):
        """Raise :class:`CheckpointError` unless :meth:`restore_trainer` can load the optimizer
        states into ``trainer`` (``gluon.Trainer`` of ``net``'s parameters); change nothing.

        It compares the trainer's :func:`optimizer_layout` (its parameters, their order and
        shapes) with the recorded one. The trainer's parameters are fixed when it is built, so
        call it before loading anything (weights included): a refused resume then leaves
        ``net`` as it was. Sizes of ``net`` not known yet (deferred initialization: 0 or -1,
        or no shape) match any recorded size: loading the checkpoint's weights sets them to
        the recorded ones (the weights and the layout were saved from the same parameters),
        and :meth:`restore_trainer` checks again with all sizes known.

        Raises
        ------
        CheckpointError
            Without states, or when they were saved for another :func:`optimizer_layout` than
            the trainer's, or with no layout recorded (a checkpoint of an older gluonseg, whose
            states may be in another order): loaded, they would put momentum into the wrong
            arrays.
        """
        if self._trainer_bytes is None:
            raise CheckpointError('%s holds no trainer states (weights only)' % self.path)
        weights_only = ('To start a new run from its weights only (new optimizer states, '
                        'iteration 0), use --init-from %s (gluonseg train, '
                        'scripts/segmentation/train.py) or gluonseg.engine.initialize_from(net, '
                        '%r) before building the trainer' % (self.path, self.path))
        recorded = self.meta.get('optimizer_layout')
        if recorded is None:
            raise CheckpointError(
                '%s holds optimizer states but not the order of the parameters they belong to '
                '(it was written by an older gluonseg, whose trainers could order them by '
                'name, and names change between builds): they cannot be resumed safely. %s'
                % (self.path, weights_only))
        current = optimizer_layout(net, trainer)
        index = next((i for i, (a, b) in enumerate(zip(recorded, current))
                      if not _layout_entry_fits(a, b)), min(len(recorded), len(current)))
        if index == len(recorded) == len(current):
            return

        def at(layout):
            if index >= len(layout):
                return 'nothing (it ends before)'
            name, shape = layout[index]
            return '%s %s' % (name, 'of unknown shape' if shape is None else tuple(shape))
        raise CheckpointError(
            'The optimizer states of %s were saved for other parameters than this '
            "trainer's (%d in the checkpoint, %d here): at index %d the checkpoint has %s, "
            'the model %s. %s' % (self.path, len(recorded), len(current), index,
                                  at(recorded), at(current), weights_only))

    def restore_trainer(self, trainer, net):
        """Load the optimizer states (momentum, update counts) into the ``gluon.Trainer`` of
        ``net``'s parameters.

        It checks the trainer first (:meth:`check_trainer`), but called after
        :meth:`load_into`, it refuses with the weights already loaded: to resume weights and
        states, call :meth:`check_trainer` before :meth:`load_into`.

        Raises
        ------
        CheckpointError
            As :meth:`check_trainer`.
        """
        self.check_trainer(trainer, net)
        with _spilled(self._trainer_bytes, self.path) as fname:
            trainer.load_states(fname)

    def __repr__(self):
        return 'Checkpoint(%r, epoch=%s, iteration=%s)' % (self.path, self.meta.get('epoch'),
                                                           self.meta.get('iteration'))


class _spilled(object):
    """Context manager: ``data`` written to a temporary file (MXNet loaders want a filename)."""

    def __init__(self, data, near):
        self.data, self.near, self.name = data, near, None

    def __enter__(self):
        fd, self.name = tempfile.mkstemp(prefix='.gluonseg-', suffix='.tmp')
        with os.fdopen(fd, 'wb') as f:
            f.write(self.data)
        return self.name

    def __exit__(self, *exc):
        remove_quietly(self.name)


def save_checkpoint(path, net, trainer=None, meta=None):
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : str
        Destination; its folder is created if needed. An existing file is replaced only once
        the new one is completely written.
    net : Block
        Its parameters are saved (``save_parameters`` names).
    trainer : gluon.Trainer, optional
        Its optimizer states are saved too, with their :func:`optimizer_layout` (in the meta
        data, ``optimizer_layout``).
    meta : dict, optional
        JSON-serialisable training state (epoch, iteration, scheduler, best, RNG, args, ...).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    NonFiniteError
        If a weight (on any device) or an optimizer state is NaN or infinite; ``path`` is
        left as it was.
    """
    _refuse_nonfinite(path, net, trainer)
    meta = dict(meta or {})
    meta['format'] = CHECKPOINT_FORMAT
    if trainer is not None:
        meta['optimizer_layout'] = optimizer_layout(net, trainer)
    meta['saved_at'] = time.strftime('%Y-%m-%dT%H:%M:%S')
    meta_bytes = json.dumps(meta, indent=1, sort_keys=True, default=_json_default).encode('utf-8')
    tmp = temp_path_beside(path)
    part = tmp + '.part'
    try:
        with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(_META, meta_bytes)
            net.save_parameters(part)
            zf.write(part, _WEIGHTS)
            if trainer is not None:
                trainer.save_states(part)
                zf.write(part, _TRAINER)
        remove_quietly(part)
        publish(tmp, path)
    except BaseException:
        remove_quietly(part)
        remove_quietly(tmp)
        raise
    return path


def _refuse_nonfinite(path, net, trainer):
    arrays = {}
    contexts = {ctx for param in net.collect_params().values() for ctx in param.list_ctx()}
    for ctx in sorted(contexts, key=str):
        arrays.update(('%s on %s' % (name, ctx), array)
                      for name, array in parameter_arrays(net, ctx).items())
    if trainer is not None:
        arrays.update(optimizer_state_arrays(net, trainer))
    if all_finite(arrays.values()):
        return
    bad = nonfinite_names(arrays)
    raise NonFiniteError('Refused to write the checkpoint %s: %d array(s) hold NaN or infinite '
                         'values (%s); the file on disk, if any, is unchanged'
                         % (path, len(bad), first_names(bad)))


def _layout_entry_fits(recorded, current):
    """Whether the ``[name, shape]`` of a trainer's parameter (``current``; sizes of 0 or -1,
    or no shape: not known yet) can be the ``recorded`` one."""
    (name, saved), (current_name, shape) = recorded, current
    if name != current_name:
        return False
    if shape is None or saved is None:
        return shape is None
    return len(saved) == len(shape) and all(size in (0, -1) or size == recorded_size
                                            for recorded_size, size in zip(saved, shape))


def optimizer_layout(net, trainer):
    """The parameters of ``trainer``, in its order (that of its optimizer states), as
    ``[structural name, shape]`` pairs of ``net`` (e.g. ``['head.conv.weight', [4, 16, 1, 1]]``).

    Structural names, not the parameters' own: those carry global counters that differ
    between two builds of one model.
    """
    structural = {id(param): name for name, param in structural_params(net).items()}
    layout = []
    for param in trainer_params(trainer):
        if id(param) not in structural:
            raise ValueError('The trainer updates %s, which is not a parameter of the %s'
                             % (param.name, type(net).__name__))
        shape = None if param.shape is None else list(param.shape)
        layout.append([structural[id(param)], shape])
    return layout


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, not a gluonseg checkpoint, or incomplete.
    """
    if not os.path.isfile(path):
        raise CheckpointError('No checkpoint at %s' % path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [n for n in (_META, _WEIGHTS) if n not in names]
            if missing:
                raise CheckpointError('%s is not a complete gluonseg checkpoint (missing %s)'
                                      % (path, ', '.join(missing)))
            meta = json.loads(zf.read(_META).decode('utf-8'))
            weights = zf.read(_WEIGHTS)
            trainer = zf.read(_TRAINER) if _TRAINER in names else None
    except zipfile.BadZipFile as err:
        kind = weight_file_kind(path)
        if kind == 'checkpoint':
            raise CheckpointError('%s is a damaged gluonseg checkpoint (%s): use another '
                                  'checkpoint of the run (training writes latest.ckpt and '
                                  'best.ckpt side by side) or copy the file again'
                                  % (path, err)) from None
        raise CheckpointError('%s is not a gluonseg checkpoint (%s)' % (
            path, 'it is an MXNet .params weight file' if kind == 'params' else err)) from None
    if meta.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError('%s has format %r; this gluonseg reads %r'
                              % (path, meta.get('format'), CHECKPOINT_FORMAT))
    return Checkpoint(path, meta, weights, trainer)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, mx.Context):
        return str(obj)
    return repr(obj)


# ---------------------------------------------------------------------------------- RNG state
def seed_everything(seed):
    """Seed python ``random``, numpy's global generator and MXNet's (all devices).

    Call it before building a network: MXNet draws the initial weights from its generator.
    """
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def capture_rng_state(mxnet_seed=None):
    """JSON-serialisable states of python ``random`` and numpy's global generator.

    MXNet cannot report its generators' state; the loop instead reseeds MXNet at every
    iteration from ``(seed, iteration)``, so ``mxnet_seed`` (the base seed) and the iteration
    are all that is needed to restore it (recorded under ``'mxnet'``).
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {'python': [py_version, list(py_internal), py_gauss],
            'numpy': [np_kind, np_keys.tolist(), int(np_pos), int(np_has_gauss),
                      float(np_gauss)],
            'mxnet': {'seed': mxnet_seed,
                      'scheme': 'mx.random.seed(iteration_seed(seed, iteration)) before each '
                                'iteration'}}


def restore_rng_state(state):
    """Restore what :func:`capture_rng_state` captured (python and numpy generators)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------------- weights from elsewhere
def load_weights_from(source, ctx=mx.cpu(), root=None):
    """``{name: NDArray}`` from a checkpoint, a ``.params`` file or a registered model name
    (its published weights, which are downloaded if needed)."""
    if os.path.isfile(source):
        if zipfile.is_zipfile(source):
            return load_checkpoint(source).weights()
        loaded = mx.nd.load(source)
        if not isinstance(loaded, dict):
            raise ValueError('%s holds unnamed arrays; expected save_parameters() output' % source)
        return {k.split(':', 1)[1] if k.startswith(('arg:', 'aux:')) else k: v
                for k, v in loaded.items()}
    try:
        zoo_net = get_model(source, pretrained=True, root=root, ctx=mx.cpu())
    except UnknownModelError:
        raise FileNotFoundError('%r is neither a file nor a registered model name' % source) \
            from None
    return {k: p.data() for k, p in structural_params(zoo_net).items()}


def initialize_from(net, source, ctx=mx.cpu(), root=None):
    """Start ``net`` from the weights of ``source`` (checkpoint, ``.params`` or model name).

    Arrays are matched by name. Class layers (arrays whose shape differs from the model's only
    in the first axis, the number of classes) are left as initialized: that is how a model
    trained on one label set starts another. Arrays of the file that the model lacks (e.g. an
    auxiliary head the model was built without) are ignored.

    Returns
    -------
    dict
        ``{'loaded': [...], 'reinitialized': [...], 'ignored': [...]}`` parameter names.

    Raises
    ------
    ValueError
        If a model parameter is missing from the source or differs in another way than the
        class count.
    """
    loaded = load_weights_from(source, ctx=ctx, root=root)
    params = structural_params(net)
    missing = sorted(set(params) - set(loaded))
    ignored = sorted(set(loaded) - set(params))
    reinit, bad = [], []
    for name in sorted(set(params) & set(loaded)):
        want, have = tuple(params[name].shape), tuple(loaded[name].shape)
        if want == have:
            continue
        if len(want) == len(have) and want[1:] == have[1:]:
            reinit.append(name)
        else:
            bad.append('%s: source %s, model %s' % (name, have, want))
    if missing or bad:
        raise ValueError('Cannot initialize %s from %s:%s%s' % (
            type(net).__name__, source,
            ('\n  missing in the source: ' + ', '.join(missing[:8])) if missing else '',
            ('\n  shape differs: ' + ', '.join(bad[:8])) if bad else ''))
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    names = [n for n in sorted(set(params) & set(loaded)) if n not in reinit]
    for name in names:
        load_into_parameter(params[name], loaded[name], ctx)
    return {'loaded': names, 'reinitialized': reinit, 'ignored': ignored}


# --------------------------------------------------------------- which kind of weight file
_FILE_SIGNATURES = ((b'PK\x03\x04', 'checkpoint'),  # a zip archive, what save_checkpoint writes
                    # MXNet's NDArray file magic, 0x112
                    (b'\x12\x01\x00\x00\x00\x00\x00\x00', 'params'))


def weight_file_kind(path):
    """``'checkpoint'`` (a zip archive: the container :func:`save_checkpoint` writes),
    ``'params'`` (MXNet's NDArray file: ``save_parameters``, ``.params``) or None (neither),
    judged by the first 8 bytes of the file at ``path``, so that a command can say which of its
    options takes the file. It does not tell whether the file is complete: the loaders do."""
    with open(path, 'rb') as f:
        head = f.read(8)
    return next((kind for signature, kind in _FILE_SIGNATURES if head.startswith(signature)), None)


def checkpoint_task(path):
    """The task of the checkpoint at ``path`` (``meta['task']``: 'semantic', 'instance';
    semantic checkpoints written before it was recorded have none), read from its metadata
    alone; None when the file is not a readable checkpoint (the loaders then say why)."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read(_META).decode('utf-8'))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return meta.get('task', 'semantic')
