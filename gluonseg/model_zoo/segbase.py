"""What every semantic segmentation network shares (full-size outputs, a graph per mode:
:class:`SegmentationNetwork`) and the dilated ResNet most of them are built on
(:class:`SegBaseModel`).

Outputs are resized to the size of the input *inside* the graph (``BilinearResize2D`` in
``like`` mode), so one network, hybridized or not, takes any H x W (97 x 131 works) and
nothing in it changes between calls.
"""
import re
import warnings

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from ..data.transforms import load_image, normalize_image
from ..utils.mxnet_compat import (cached_graph, has_data, is_hybridized, put_cached_graph,
                                  take_cached_graph)
from .model_store import ModelStoreError
from .registry import get_model
from .resnest import RESNEST_SPECS, resnest
from .resnetv1b import resnet_v1b

__all__ = ['SegmentationNetwork', 'SegBaseModel', 'FCNHead', 'classifier_block', 'conv_bn_relu',
           'parse_backbone', 'build_backbone', 'resize_like', 'initialize_keeping_values']

# Segmentation defaults to the deep-stem v1s backbones for 50/101/152 (what GluonCV's
# published segmentation weights were trained with) and to v1b for the shallow ones.
DEFAULT_VARIANT = {18: 'v1b', 34: 'v1b', 50: 'v1s', 101: 'v1s', 152: 'v1s'}


def parse_backbone(name):
    """``'resnet101'`` -> ``(101, 'v1s')``; ``'resnet50_v1d'`` -> ``(50, 'v1d')``;
    ``'resnest50'`` -> ``(50, 'resnest')``."""
    match = re.fullmatch(r'resnest(\d+)', name)
    if match:
        depth = int(match.group(1))
        if depth not in RESNEST_SPECS:
            raise ValueError('Unknown backbone %r: ResNeSt depth must be one of %s'
                             % (name, sorted(RESNEST_SPECS)))
        return depth, 'resnest'
    match = re.fullmatch(r'resnet(\d+)(?:_(v1[bcds]))?', name)
    if not match:
        raise ValueError("Unknown backbone %r: expected 'resnet<depth>', "
                         "'resnet<depth>_v1{b,c,d,s}' or 'resnest<depth>', e.g. 'resnet101', "
                         "'resnet50_v1d' or 'resnest50'" % (name,))
    depth = int(match.group(1))
    if depth not in DEFAULT_VARIANT:
        raise ValueError('Unknown backbone %r: depth must be one of %s'
                         % (name, sorted(DEFAULT_VARIANT)))
    return depth, match.group(2) or DEFAULT_VARIANT[depth]


def build_backbone(name, dilated=True, pretrained=False, root=None, norm_layer=nn.BatchNorm,
                   norm_kwargs=None):
    """A (dilated) ResNetV1b or ResNeSt, with its published ImageNet weights when
    ``pretrained``.

    Models pass their ``pretrained_base`` as ``pretrained``; when the weights cannot be
    obtained, the error (:class:`~gluonseg.model_zoo.model_store.ModelStoreError`, or
    ``PermissionError`` for a read-only cache) says that ``pretrained_base`` asked for them
    and how to build without them.
    """
    depth, variant = parse_backbone(name)
    kwargs = dict(dilated=dilated, norm_layer=norm_layer, norm_kwargs=norm_kwargs)
    if pretrained:
        backbone = ('resnest%d' % depth if variant == 'resnest'
                    else 'resnet%d_%s' % (depth, variant))
        # Said when the weights cannot be had: pretrained=False alone does not avoid them.
        why = ('pretrained_base=True asks for the ImageNet weights of the backbone %r (it is '
               'the default of gluonseg.get_model, also with pretrained=False, as in GluonCV). '
               'Pass pretrained_base=False to start the backbone from random weights (offline, '
               'or when you load trained weights next), or make the weights available:\n'
               % backbone)
        try:
            return get_model(backbone, pretrained=True, root=root, **kwargs)
        except ModelStoreError as err:
            raise ModelStoreError(why + str(err), url=err.url, path=err.path, status=err.status,
                                  sha1=err.sha1, cause=err) from None
        except PermissionError as err:  # a cache folder that cannot be written to
            raise PermissionError(err.errno, why + err.strerror) from None
    if variant == 'resnest':
        return resnest(depth, **kwargs)
    return resnet_v1b(depth, variant, **kwargs)


def initialize_keeping_values(block, init, ctx=None, verbose=False, force_reinit=False):
    """``block.initialize(...)`` that initializes only the parameters without a value and
    says in one warning, rather than MXNet's one per parameter, how many kept theirs (those
    that ``get_model`` or a weight file filled). ``force_reinit`` re-initializes every one, as
    in MXNet."""
    params = block.collect_params()
    if force_reinit:
        params.initialize(init, ctx, verbose, force_reinit=True)
        return
    if verbose:
        init.set_verbosity(verbose=verbose)
    kept = 0
    for param in params.values():
        if not has_data(param):
            param.initialize(None, ctx, init)
        else:
            kept += 1
    if kept:
        warnings.warn('%d of %d parameters of %s were already initialized (by get_model, a '
                      'pretrained backbone or loaded weights) and keep their values; use '
                      'force_reinit=True to re-initialize them'
                      % (kept, len(params.keys()), type(block).__name__), stacklevel=3)


def resize_like(F, x, like, reproducible_gradient=False):
    """Bilinear resize of ``x`` to the spatial size of ``like`` (corners aligned, as the
    published weights were trained): MXNet's ``BilinearResize2D``.

    Training passes ``reproducible_gradient`` (:func:`set_reproducible_gradients`; gluonseg's
    trainer does it): the output keeps ``BilinearResize2D``'s bits, but the gradient flows
    through the same resize written as two matrix products (:func:`interpolation_matrix`),
    whose sums have a fixed order, and none flows into ``like``. ``BilinearResize2D``'s own
    backward (MXNet 1.9.1) adds each output pixel's gradient into the input under an OpenMP
    ``critical`` section on the CPU (atomic additions on GPUs), in the order the threads
    arrive, so two runs of the same training drift apart; and it writes zeros over the
    gradient of ``like``, which in a ``hybridize(static_alloc=True)`` graph erases what the
    other uses of ``like`` have accumulated (PSPNet's pyramid: wrong backbone gradients).
    """
    # ``like`` only lends its size: BlockGrad keeps BilinearResize2D's backward from writing
    # zeros over its gradient (see above), which breaks any network whose ``like`` is a
    # feature map used elsewhere, under static_alloc, in any training loop.
    out = F.contrib.BilinearResize2D(x, like=F.BlockGrad(like), mode='like', align_corners=True)
    if not reproducible_gradient:
        return out
    rows = interpolation_matrix(F, x, like, axis=2)
    cols = interpolation_matrix(F, x, like, axis=3)
    products = F.dot(x, cols, transpose_b=True)  # (N, C, H_in, W_out)
    products = F.swapaxes(F.dot(F.swapaxes(products, 2, 3), rows, transpose_b=True), 2, 3)
    # products - BlockGrad(products) is exactly 0 and carries the products' gradient.
    return F.BlockGrad(out) + (products - F.BlockGrad(products))


def interpolation_matrix(F, x, like, axis):
    """The (T, S) float32 weights of corner-aligned linear interpolation along ``axis`` from
    the S samples of ``x`` to the T of ``like``: row i is max(0, 1 - |i (S-1)/(T-1) - j|),
    the two weights ``BilinearResize2D`` gives to the neighbours of position i (S-1)/(T-1)."""
    source = F.cast(F.contrib.arange_like(x, axis=axis), dtype='float32')
    target = F.cast(F.contrib.arange_like(like, axis=axis), dtype='float32')
    scale = F.broadcast_div(F.max(source), F.maximum(F.max(target), 1))
    position = F.broadcast_mul(target, scale)
    distance = F.abs(F.broadcast_sub(position.reshape((-1, 1)), source.reshape((1, -1))))
    return F.BlockGrad(F.relu(1 - distance))


def set_reproducible_gradients(net, enabled=True):
    """Make every resize of ``net`` (its outputs, PSPNet's pyramid) compute its gradient the
    reproducible way of :func:`resize_like`; the outputs do not change. Call it before
    training a network (gluonseg's trainer does); a hybridized network takes it at its next
    ``hybridize()``. Returns the number of blocks changed (0 for a network without such
    resizes)."""
    changed = []

    def visit(block):
        if hasattr(block, 'reproducible_gradients'):
            block.reproducible_gradients = enabled
            changed.append(block)
    net.apply(visit)
    return len(changed)


def conv_bn_relu(channels, kernel, in_channels, norm_layer, norm_kwargs, padding=0,
                  dilation=1, strides=1, groups=1):
    """Conv (no bias) -> norm -> ReLU, as a 3-element sequence (keys ``.0`` and ``.1``)."""
    block = nn.HybridSequential()
    block.add(nn.Conv2D(channels, kernel, strides=strides, padding=padding, dilation=dilation,
                        groups=groups, use_bias=False, in_channels=in_channels),
              norm_layer(in_channels=channels, **(norm_kwargs or {})),
              nn.Activation('relu'))
    return block


def classifier_block(in_channels, channels, nclass, norm_layer, norm_kwargs):
    """3x3 conv -> norm -> ReLU -> dropout 0.1 -> 1x1 classifier (with bias): the last part of
    every head (keys ``block.0``, ``block.1``, ``block.4``)."""
    block = conv_bn_relu(channels, 3, in_channels, norm_layer, norm_kwargs, padding=1)
    block.add(nn.Dropout(0.1), nn.Conv2D(nclass, 1, in_channels=channels))
    return block


class FCNHead(nn.HybridBlock):
    """The FCN head: :func:`classifier_block` with ``in/4`` channels. Also every model's
    auxiliary head on stage 3."""

    def __init__(self, in_channels, nclass, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.block = classifier_block(in_channels, in_channels // 4, nclass, norm_layer,
                                          norm_kwargs)

    def hybrid_forward(self, F, x):
        return self.block(x)


class SegmentationNetwork(nn.HybridBlock):
    """What every semantic network shares, whatever computes its features: the outputs by
    mode, one cached graph per mode, initialization, export and ``predict``.

    Calling the network returns ``(out, aux)`` while training (``autograd.is_training()``,
    e.g. inside ``autograd.record()``) when the auxiliary head exists, and ``out`` alone
    otherwise; both are logits of shape (N, nclass, H, W) at the input's H x W. Outside
    training the auxiliary head is not computed at all: a hybridized network keeps one graph
    for training and one for inference, and ``export()`` writes the inference graph (main
    output only). The auxiliary head's parameters stay in the network, so the published
    weight files load unchanged. A subclass builds its blocks and writes ``hybrid_forward``
    returning those outputs (the auxiliary one only when ``self.aux`` and
    ``autograd.is_training()``).

    Parameters
    ----------
    nclass : int
        Number of classes.
    aux : bool
        Build the auxiliary head (the published weights include it).
    norm_layer, norm_kwargs :
        Normalization block of the network, e.g. ``mx.gluon.contrib.nn.SyncBatchNorm`` with
        ``{'num_devices': 4}``.
    """

    #: Resize with a reproducible gradient (:func:`set_reproducible_gradients`).
    reproducible_gradients = False

    @property
    def training_only_outputs(self):
        """Whether training returns outputs that inference leaves out (the auxiliary head's,
        or a subclass's other extra heads): then a hybridized network keeps a graph per mode."""
        return self.aux

    def __init__(self, nclass, aux=True, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.nclass = nclass
        self.aux = aux
        self._norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        self._graph_training = None  # the mode the current cached graph was traced in
        self._graphs = {}  # mode -> the _CACHED_GRAPH_FIELDS of the other mode's graph

    def forward(self, x, *args):
        if self.training_only_outputs and is_hybridized(self):
            self._select_graph(autograd.is_training())
        out = super().forward(x, *args)
        # A hybridized graph returns its outputs as a list: a tuple either way.
        return tuple(out) if isinstance(out, list) else out

    def _select_graph(self, training):
        """Make the graph traced in this mode the one MXNet runs, keeping the other's (MXNet's
        HybridBlock holds one graph, traced at its first call)."""
        if self._graph_training == training:
            return
        current = take_cached_graph(self)
        if current is not None:
            self._graphs[self._graph_training] = current
        saved = self._graphs.pop(training, None)
        if saved is not None:
            put_cached_graph(self, saved)
        self._graph_training = training

    # MXNet calls these three hooks when it traces a graph, builds its CachedOp and drops
    # them (tests/test_mxnet_compat.py checks that it does).
    def _get_graph(self, *args):
        if not cached_graph(self):
            self._graph_training = autograd.is_training()
        return super()._get_graph(*args)

    def _build_cache(self, *args):
        training = self._graph_training if cached_graph(self) else autograd.is_training()
        if training or not self.training_only_outputs:
            return super()._build_cache(*args)
        with warnings.catch_warnings():
            # MXNet warns when a graph leaves parameters unused; the inference graph leaves
            # out the heads of the training-only outputs on purpose.
            warnings.filterwarnings('ignore', r'Parameter .* is not used by any computation',
                                    UserWarning)
            return super()._build_cache(*args)

    def _clear_cached_op(self):
        super()._clear_cached_op()
        self._graphs = {}

    def initialize(self, init=mx.init.Uniform(), ctx=None, verbose=False, force_reinit=False):
        """Initialize the parameters that have no value yet; see
        :func:`initialize_keeping_values`."""
        initialize_keeping_values(self, init, ctx, verbose, force_reinit)

    def export(self, path, epoch=0, remove_amp_cast=True):
        """Export the inference graph (main output only) as ``path-symbol.json`` and
        ``path-%04d.params``; load it with ``mx.gluon.SymbolBlock.imports``."""
        if self.training_only_outputs and is_hybridized(self):
            self._select_graph(training=False)
            if not cached_graph(self):  # not run at inference yet: build that graph
                with autograd.predict_mode():
                    self(mx.nd.zeros((1, 3, 64, 64), ctx=self._first_ctx()))
        return super().export(path, epoch, remove_amp_cast=remove_amp_cast)

    def _first_ctx(self):
        return next(iter(self.collect_params().values())).list_ctx()[0]

    def predict(self, images):
        """Class ids at each image's own size.

        Parameters
        ----------
        images : NDArray, or an image, or a list of images
            A normalized batch (N, 3, H, W), or images as file paths, PIL images or uint8
            HxWx3 RGB arrays, normalized here with the model's mean and std.

        Returns
        -------
        NDArray (N, H, W) int32 for a batch; numpy (H, W) int32 for one image; a list of
        those for a list of images.
        """
        if isinstance(images, mx.nd.NDArray) and images.ndim == 4:
            with autograd.predict_mode():
                out = self(images)
            return out.argmax(axis=1).astype('int32')
        if isinstance(images, (list, tuple)):
            return [self.predict(image) for image in images]
        batch = self.preprocess(images)
        return self.predict(batch)[0].asnumpy()

    def preprocess(self, image):
        """An image (path, PIL image or uint8 HxWx3 RGB array) as a normalized (1, 3, H, W)
        batch on the model's first context."""
        info = getattr(self, 'gluonseg_info', None)
        norm = dict(mean=info.mean, std=info.std) if info is not None else {}
        array = normalize_image(load_image(image), **norm)
        return mx.nd.array(array[None], ctx=self._first_ctx())


class SegBaseModel(SegmentationNetwork):
    """A dilated ResNet (stages kept as ``conv1`` ... ``layer4``), a head on stage 4 and an
    optional auxiliary FCN head on stage 3.

    Outputs as :class:`SegmentationNetwork` says.

    Parameters
    ----------
    nclass : int
        Number of classes.
    backbone : str
        ``'resnet50'``, ``'resnet101'``, ``'resnet152'`` (deep-stem v1s), an explicit
        variant such as ``'resnet50_v1b'``, or ``'resnest50'`` ... ``'resnest269'``.
    aux : bool
        Build the auxiliary FCN head on stage 3 (the published weights include it).
    pretrained_base : bool
        Load the ImageNet weights of the backbone.
    norm_layer, norm_kwargs :
        Normalization block for backbone and heads, e.g. ``mx.gluon.contrib.nn.SyncBatchNorm``
        with ``{'num_devices': 4}``.
    """

    def __init__(self, nclass, backbone='resnet50', aux=True, pretrained_base=True, root=None,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(nclass, aux=aux, norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                         **kwargs)
        self.backbone_name = backbone
        with self.name_scope():
            base = build_backbone(backbone, dilated=True, pretrained=pretrained_base, root=root,
                                  **self._norm)
            # Keep the stages at the top level: the published files name them ``layer3.0...``.
            self.conv1, self.bn1, self.relu, self.maxpool = (base.conv1, base.bn1, base.relu,
                                                             base.maxpool)
            self.layer1, self.layer2 = base.layer1, base.layer2
            self.layer3, self.layer4 = base.layer3, base.layer4
            self.stage3_channels = 256 * base.layer3[0].expansion
            self.stage4_channels = 512 * base.layer4[0].expansion
            if aux:
                self.auxlayer = FCNHead(self.stage3_channels, nclass, **self._norm)

    def base_forward(self, x):
        """Stage 3 and stage 4 features (both at 1/8 of the input size)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer3(self.layer2(self.layer1(x)))
        return c3, self.layer4(c3)

    def hybrid_forward(self, F, x):
        c3, c4 = self.base_forward(x)
        out = resize_like(F, self.head(c4), x, self.reproducible_gradients)
        # A hybridized network takes this branch once, when its graph is traced; forward()
        # keeps a graph per mode.
        if self.aux and autograd.is_training():
            return out, resize_like(F, self.auxlayer(c3), x, self.reproducible_gradients)
        return out

    def head_blocks(self):
        """The blocks trained from scratch on a new task (for a larger learning rate)."""
        return [self.head] + ([self.auxlayer] if self.aux else [])
