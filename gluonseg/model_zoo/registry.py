"""The model registry: one name -> (builder, metadata, published weights).

The names gluonseg ships are the records of :mod:`.weights_table`; users add their own with
:func:`register_model` and :func:`register_weights`. :func:`get_model`, :func:`list_models`,
``predict``'s preprocessing, the README's model table and ``docs/model_zoo.md`` all read the
same records, so the documentation cannot drift from the code. Listing and describing models
imports neither MXNet nor a model file; :func:`get_model` imports the builder's module when it
builds.
"""
import difflib
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

from ..data.catalog import dataset_info, resolve
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..utils.download import sha1_file
from . import weights_table

__all__ = ['Weights', 'ModelEntry', 'LazyBuilder', 'register_model', 'register_weights',
           'get_model', 'list_models', 'model_info', 'similar_names', 'load_weights',
           'UnknownModelError', 'IMAGENET_MEAN', 'IMAGENET_STD']


@dataclass
class Weights:
    """One weight file for a registered model.

    ``sha1`` is the full SHA-1 of the ``.params`` file (None: not verified). With neither
    ``url`` nor ``path`` the file comes from the published store
    (``{repo}gluon/models/{name}-{sha1[:8]}.zip``). ``params`` and ``gmacs``: learned values
    and billions of multiply-adds of the model (see :data:`.weights_table.COST`; None when
    not measured).
    """
    sha1: Optional[str]
    url: Optional[str] = None
    path: Optional[str] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    protocol: str = ''
    source: str = ''
    params: Optional[int] = None
    gmacs: Optional[float] = None

    @property
    def tag(self):
        return self.sha1[:8] if self.sha1 else 'local'


class LazyBuilder:
    """A builder named by ``'module:function'`` with fixed keyword arguments; the module is
    imported when the builder is first called. Keyword arguments of the call override the
    fixed ones."""

    def __init__(self, reference, kwargs=None):
        self.reference = reference
        self.kwargs = dict(kwargs or {})

    def __call__(self, **kwargs):
        return resolve(self.reference)(**dict(self.kwargs, **kwargs))

    def __repr__(self):
        return '%s(%s)' % (self.reference, ', '.join('%s=%r' % kv for kv in self.kwargs.items()))


@dataclass
class ModelEntry:
    """Everything known about a registered model name.

    ``dataset`` is the display name of the training data; ``dataset_id`` its name in
    :data:`gluonseg.data.catalog.DATASETS` ('' for a user's model). ``classes_source`` holds
    the class names, or the ``'module:NAME'`` of a shipped list (``classes`` reads it then).
    ``resize``: how ``predict`` resizes an image first (see :mod:`.weights_table`).
    """
    name: str
    builder: Callable
    task: str
    dataset: str
    num_classes: int
    classes_source: Union[Tuple[str, ...], str] = ()
    architecture: str = ''
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD
    weights: List[Weights] = field(default_factory=list)
    resize: Optional[Dict[str, int]] = None
    dataset_id: str = ''

    @property
    def classes(self):
        """The class names, indexed by label (empty when none are shipped: ImageNet)."""
        if isinstance(self.classes_source, str):
            self.classes_source = tuple(resolve(self.classes_source))
        return self.classes_source

    @property
    def pretrained(self):
        return bool(self.weights)

    def select_weights(self, pretrained=True):
        """The weight record for ``pretrained`` (True: the default, the first registered; a
        string: the record whose SHA-1 starts with it)."""
        if not self.weights:
            raise ValueError(
                'No pretrained weights are published for %r. Build it with pretrained=False '
                'and train it, or register a file with gluonseg.model_zoo.register_weights(%r, '
                'sha1=..., path=... or url=...). Models with weights: %s'
                % (self.name, self.name, ', '.join(list_models(pretrained=True)[:8]) + ', ...'))
        if pretrained is True:
            return self.weights[0]
        prefix = str(pretrained).lower()
        matches = [w for w in self.weights if w.sha1 and w.sha1.startswith(prefix)]
        if len(matches) != 1:
            raise ValueError('pretrained=%r matches %d of the weight files of %r (SHA-1s: %s)'
                             % (pretrained, len(matches), self.name,
                                ', '.join(w.sha1 or 'unverified' for w in self.weights)))
        return matches[0]


def _table_entry(name, record):
    """The :class:`ModelEntry` of a :data:`.weights_table.MODELS` record."""
    data = dataset_info(record['dataset'])
    params, gmacs = weights_table.COST.get(name, (None, None))
    weights = [Weights(row['sha1'], metrics=dict(row['metrics']),
                       protocol=row.get('protocol', data.protocol) if row['metrics'] else '',
                       source=row['source'], params=params, gmacs=gmacs)
               for row in weights_table.WEIGHTS.get(name, ())]
    return ModelEntry(name, LazyBuilder(record['builder'], record['kwargs']), record['task'],
                      data.display_name, data.num_classes, data.classes or (),
                      record['architecture'], tuple(record['mean']), tuple(record['std']),
                      weights, record['resize'], data.name)


_REGISTRY: Dict[str, ModelEntry] = {
    name: _table_entry(name, record) for name, record in weights_table.MODELS.items()}


class UnknownModelError(KeyError):
    """Raised by :func:`get_model` for a name that is not registered."""

    def __str__(self):
        return self.args[0]


def register_model(name=None, *, task, dataset, classes, architecture='', weights=(),
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=None):
    """Register a builder under ``name`` (default: the function's name).

    The builder is called as ``builder(pretrained_base=..., root=..., **kwargs)`` and returns
    an uninitialized network. ``classes`` is the list of class names, or their number when
    the names are not shipped (ImageNet). ``resize``: how ``predict`` resizes an image first
    (None: at its own size; see :mod:`.weights_table`). Usable as a decorator or called
    directly with a builder::

        @register_model(task='semantic', dataset='shapes', classes=('bg', 'disc'))
        def fcn_tiny_shapes(**kwargs):
            ...
    """
    def decorator(builder):
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError('Model name %r is already registered' % key)
        names = () if isinstance(classes, int) else tuple(classes)
        _REGISTRY[key] = ModelEntry(key, builder, task, dataset, len(names) or classes, names,
                                    architecture, tuple(mean), tuple(std), list(weights),
                                    resize)
        return builder
    return decorator


def register_weights(name, sha1=None, url=None, path=None, metrics=None, protocol='',
                     source='user', default=True):
    """Add a weight file for a registered model (a local ``path`` or a ``url``; a ``sha1``
    makes gluonseg verify it). With ``default`` it becomes what ``pretrained=True`` loads."""
    if url is None and path is None and sha1 is None:
        raise ValueError('register_weights(%r) needs a sha1 (published store), a url or a path'
                         % name)
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError('Weight file for %r not found: %s' % (name, path))
    record = Weights(sha1=sha1.lower() if sha1 else None, url=url, path=path,
                     metrics=dict(metrics or {}), protocol=protocol, source=source)
    entry = model_info(name)
    if default:
        entry.weights.insert(0, record)
    else:
        entry.weights.append(record)
    return record


def model_info(name):
    """The :class:`ModelEntry` of ``name``; an unknown name suggests the closest ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = similar_names(name)
        hint = ('Did you mean: %s?' % ', '.join(close)) if close else \
            'See gluonseg.list_models().'
        raise UnknownModelError('Unknown model %r. %s' % (name, hint)) from None


def similar_names(text, words=False):
    """Up to five registered names close to ``text`` (a misspelled name), closest first.

    With ``words``, the words of the names (the parts between underscores: ``'shapes'``,
    ``'citys'``, ``'resnet101'``) are candidates too, for a misspelled part of a name."""
    candidates = set(_REGISTRY)
    if words:
        candidates.update(word for key in _REGISTRY for word in key.split('_'))
    return difflib.get_close_matches(text, sorted(candidates), n=5, cutoff=0.5)


def list_models(pattern='*', pretrained=None, task=None, dataset=None):
    """Registered names matching a shell wildcard ``pattern`` (e.g. ``'deeplab_*'``), sorted;
    ``pretrained=True/False`` keeps only names with/without published weights."""
    names = []
    for key, entry in sorted(_REGISTRY.items()):
        if not fnmatch.fnmatchcase(key, pattern):
            continue
        if pretrained is not None and entry.pretrained != bool(pretrained):
            continue
        if task is not None and entry.task != task:
            continue
        if dataset is not None and entry.dataset != dataset:
            continue
        names.append(key)
    return names


def get_model(name, pretrained=False, pretrained_base=True, ctx=None, root=None, **kwargs):
    """Build a registered model.

    Parameters
    ----------
    name : str
        A registered name, e.g. ``'deeplab_resnet101_voc'`` (see :func:`list_models`).
    pretrained : bool or str
        Load the published weights (True), or the weight file whose SHA-1 starts with the
        given string.
    pretrained_base : bool
        Without ``pretrained``, start the backbone from its ImageNet weights.
    ctx : Context or list of Context
        Where the parameters live (default: the CPU).
    root : str
        Weight cache folder (default ``$GLUONSEG_HOME/models``).
    **kwargs
        Passed to the builder (``norm_layer``, ``norm_kwargs``, ``aux``, ``dilated``, ...).
        With ``pretrained``, ``classes=[...]`` other than the model's (for models with a
        ``reset_class`` method, e.g. Mask R-CNN) loads the published weights, then replaces
        the class-specific layers; ``reuse_weights`` is passed to ``reset_class`` (keep the
        rows of classes of the original set).
    """
    entry = model_info(name)
    weights = entry.select_weights(pretrained) if pretrained else None
    new_classes, reuse = kwargs.pop('classes', None), kwargs.pop('reuse_weights', None)
    reset = weights is not None and isinstance(new_classes, (list, tuple)) and \
        tuple(new_classes) != tuple(entry.classes)
    if new_classes is not None and not reset:
        kwargs['classes'] = new_classes
    if reuse is not None and not reset:
        raise ValueError('reuse_weights needs pretrained=True and classes other than those '
                         'of %r' % entry.name)
    net = entry.builder(pretrained_base=bool(pretrained_base) and not pretrained, root=root,
                        **kwargs)
    net.gluonseg_info = entry
    ctx = _context_list(ctx)
    if weights is not None:
        if reset and not hasattr(net, 'reset_class'):
            raise ValueError('%r cannot change its classes after loading its weights (no '
                             'reset_class); build it with pretrained=False instead'
                             % entry.name)
        load_weights(net, fetch_weights(entry.name, weights, root), ctx=ctx)
        if reset:
            net.reset_class(new_classes, reuse_weights=reuse)
    else:
        _initialize_missing(net, ctx)
    return net


def fetch_weights(name, weights, root=None):
    """Path of the verified file of a :class:`Weights` record (downloaded when needed)."""
    if weights.path is not None:
        if weights.sha1 and sha1_file(weights.path) != weights.sha1:
            raise IOError('Weight file %s registered for %r does not have SHA-1 %s'
                          % (weights.path, name, weights.sha1))
        return weights.path
    from .model_store import get_model_file  # lazy: listing models loads no other model_zoo module
    return get_model_file(name, weights.sha1, root=root, url=weights.url)


def _context_list(ctx):
    """``ctx`` (None: the CPU) as a list of contexts."""
    if ctx is None:
        import mxnet as mx  # lazy: listing models must not import MXNet
        ctx = mx.cpu()
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def _initialize_missing(net, ctx, init=None):
    """Initialize parameters that no weight file filled (e.g. a new head)."""
    import mxnet as mx  # lazy: listing models must not import MXNet

    from ..utils.mxnet_compat import (  # lazy: listing models must not import MXNet
        has_data, is_deferred)
    init = init or mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)
    for param in net.collect_params().values():
        if not has_data(param) and not is_deferred(param):
            param.initialize(init=None if param.init is not None else init, ctx=ctx)
        else:
            param.reset_ctx(ctx)


def load_weights(net, filename, ctx=None):
    """Load ``filename`` into ``net`` strictly: every array must exist with the same shape.

    Errors list the missing, unexpected and mismatched names (not only the first), and name
    the file. ``ctx``: a context or a list of them (default: the CPU).
    """
    import mxnet as mx  # lazy: listing models must not import MXNet

    from ..utils.mxnet_compat import (  # lazy: listing models must not import MXNet
        load_into_parameter, structural_params)
    loaded = mx.nd.load(filename)
    if isinstance(loaded, list) or not loaded:
        raise ValueError('%s holds no named arrays; expected a file written by '
                         'save_parameters()' % filename)
    # Some files carry the 'arg:'/'aux:' prefixes of Module checkpoints.
    loaded = {k.split(':', 1)[1] if k.startswith(('arg:', 'aux:')) else k: v
              for k, v in loaded.items()}
    params = structural_params(net)
    missing = sorted(set(params) - set(loaded))
    unexpected = sorted(set(loaded) - set(params))
    mismatched = ['%s: file %s, model %s' % (k, loaded[k].shape, params[k].shape)
                  for k in sorted(set(params) & set(loaded))
                  if params[k].shape and 0 not in params[k].shape
                  and tuple(params[k].shape) != loaded[k].shape]
    if missing or unexpected or mismatched:
        def show(keys):
            return ', '.join(keys[:6]) + (' ... (%d in all)' % len(keys) if len(keys) > 6 else '')
        problems = []
        if missing:
            problems.append('missing in the file: ' + show(missing))
        if unexpected:
            problems.append('not in the model: ' + show(unexpected))
        if mismatched:
            problems.append('shape differs: ' + show(mismatched))
        raise ValueError('Cannot load %s into %s:\n  %s' % (filename, type(net).__name__,
                                                            '\n  '.join(problems)))
    ctx = _context_list(ctx)
    for key, param in params.items():
        load_into_parameter(param, loaded[key], ctx)
