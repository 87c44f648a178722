"""Fast CPU inference of a segmentation network: oneDNN operator fusion, bfloat16 (AMP) and
int8 (quantization); :func:`gluonseg.optimize` calls :func:`optimize_segmentation`.

What each path does with MXNet 1.9.1 (CPU build with oneDNN, called MKLDNN there):

``'float32'``
    ``optimize_for(backend='MKLDNN')``: every Convolution -> BatchNorm -> ReLU (and the
    residual ``+`` of the ResNet blocks) becomes one fused oneDNN convolution; BatchNorm is
    folded into the weights in float32, so the logits match the unfused network to ~1e-6.
``'bfloat16'``
    MXNet AMP (``amp.convert_hybrid_block``) runs every Convolution in bfloat16, then the
    same oneDNN fusion. Two things differ from AMP's defaults:

    * ``Concat`` is in AMP's "either precision" list, for which AMP inserts *no* casts, so a
      concat of a bfloat16 convolution branch and a float32-only operator fails type
      inference ("Non-uniform data type in Concat"): PSPNet's pyramid (the stage-4 features
      with the ``BilinearResize2D`` outputs) and DeepLabV3's ASPP (four convolution branches
      with the ``broadcast_like`` image pooling). Here ``Concat`` runs in bfloat16 (AMP casts
      its float32 inputs), so the model code needs no change and every convolution of FCN,
      PSPNet and DeepLabV3 converts.
    * ``cast_optional_params=True`` stores the convolution weights in bfloat16 (half the
      memory, no per-call weight casts). The fusion runs after AMP (AMP's lists keep fused
      ``_sg_mkldnn_conv`` in float32), so BatchNorm is folded into bfloat16 weights.
      Keeping the final classifier in float32 (the default) lowers the logits' error
      (``scripts/benchmark/optimize_accuracy.py`` measures it, ``docs/benchmarks.md``).

    The final 1x1 classifier (unless ``float_classifier=False``) and any ``exclude_layers``
    stay in float32; so do, by AMP's lists, ``BilinearResize2D``, ``AdaptiveAvgPooling2D``,
    ``broadcast_like`` and ``Dropout``. The output is float32.
``'int8'``
    ``mx.contrib.quantization.quantize_net_v2`` (``quantize_net`` is its deprecated alias):
    conv + BN + ReLU (+ add) fused and quantized by oneDNN (VNNI), with thresholds
    calibrated on a few batches (``'naive'``: min/max; ``'entropy'``: KL-optimal, slower to
    calibrate; ``'none'``: computed at run time, no calibration data, slower to run).
    Kept in float32 (see :attr:`OptimizedSegmentation.float_layers`): the final 1x1
    classifier (by default: per-tensor int8 logits would coarsen the class scores) and any
    ``exclude_layers``; and, because MXNet 1.9.1 has no int8 kernels for them,
    ``BilinearResize2D``, ``AdaptiveAvgPooling2D`` and ``broadcast_like`` (wrapped in
    dequantize/quantize pairs). The output is float32.

Every path keeps the call signature of a gluonseg model at inference: an NDArray
(N, 3, H, W) of any H x W in, float32 logits (N, C, H, W) out. Training is not supported
(only the main output is kept; there are no gradients through int8).

On the CPU, with numba installed (``pip install gluonseg[fast]``), a call runs the graph up
to its final ``BilinearResize2D`` (corners aligned, to the input's size) and does that
resize by :mod:`.fast_resize`'s kernel: the same values, several times faster than MXNet's
operator, which otherwise takes most of the int8 time of a light network at full resolution
(Fast-SCNN at 1024x2048). :meth:`OptimizedSegmentation.export` writes the whole graph.

Limits of MXNet 1.9.1: bfloat16 and int8 exist for the CPU only (oneDNN);
``Symbol.save``/``HybridBlock.export`` strip AMP's casts by default (``remove_amp_cast=True``),
which silently turns an exported bfloat16 graph back into float32 (so
:meth:`OptimizedSegmentation.export` passes ``remove_amp_cast=False``); an exported fused or
int8 graph holds oneDNN subgraph operators (``_sg_mkldnn_conv``) and loads only into an
MXNet built with oneDNN. bfloat16 is only faster where the CPU has native bfloat16
instructions (AVX512-BF16 or AMX) and oneDNN uses them well; elsewhere it can be slower
than float32.
"""
import json
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.contrib import amp
from mxnet.contrib.amp.amp import bfloat16
from mxnet.contrib.quantization import quantize_net_v2

from ...utils.mxnet_compat import cached_graph
from .calibration import CALIB_MODES, calibration_batches, check_initialized
from .fast_resize import FinalResize

__all__ = ['optimize_segmentation', 'OptimizedSegmentation', 'DTYPES', 'find_classifier',
           'inference_symbol']

DTYPES = ('float32', 'bfloat16', 'int8')


def inference_symbol(net, input_name='data'):
    """The inference graph of ``net`` as ``(symbol, data_variable)``: the main output only.

    gluonseg models drop the auxiliary output outside training, also when called on a
    Symbol; any other block returning several outputs keeps its first (the logits).
    """
    data = mx.sym.var(input_name)
    with autograd.predict_mode():
        out = net(data)
    if isinstance(out, (list, tuple)):
        out = out[0]
    if len(out.list_outputs()) > 1:
        out = out[0]
    return out, data


def find_classifier(symbol):
    """Name of the Convolution that produces the logits: the first one met walking back from
    the output through its first inputs (past the final resize and dropout).

    Raises
    ------
    ValueError
        When no Convolution feeds the output through first inputs.
    """
    graph = json.loads(symbol.tojson(remove_amp_cast=False))
    nodes = graph['nodes']
    index = graph['heads'][0][0]
    while nodes[index]['op'] != 'null':
        if nodes[index]['op'] == 'Convolution':
            return nodes[index]['name']
        index = nodes[index]['inputs'][0][0]
    raise ValueError('No Convolution feeds the output of the graph through first inputs; '
                     'cannot tell which layer is the classifier')


class OptimizedSegmentation(mx.gluon.SymbolBlock):
    """An optimized inference graph with the call signature of a gluonseg model.

    Returned by :func:`optimize`; call it like the original network at inference. It is a
    ``SymbolBlock``: hybridized, inference only.

    Attributes
    ----------
    dtype : str
        ``'float32'``, ``'bfloat16'`` or ``'int8'``: the precision of the convolutions.
    classifier : str
        Name of the final 1x1 classifier convolution in the original graph.
    float_layers : list of (str, str)
        ``(node name, operator)`` of the compute nodes that run in float32 in an int8 graph
        (everything that is not quantized), or that stay float32 in a bfloat16 graph
        (besides casts); empty for float32.
    """

    def __init__(self, outputs, inputs, params=None, dtype='float32', classifier=None):
        with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
            warnings.simplefilter('ignore', UserWarning)
            super().__init__(outputs, inputs, params=params)
        self.dtype = dtype
        self.classifier = classifier
        self.float_layers = []
        # FinalResize (CPU, numba): the graph's final resize by the kernel; None: the graph.
        self._final_resize = None

    def forward(self, x, *args):
        if self._final_resize is not None and isinstance(x, mx.nd.NDArray) and not args:
            return self._final_resize(x)
        return super().forward(x, *args)

    def _refresh_float_layers(self):
        symbol = cached_graph(self)[1]
        nodes = json.loads(symbol.tojson(remove_amp_cast=False))['nodes']
        if self.dtype == 'bfloat16':
            # What AMP left in float32: the nodes whose output type infers as float32.
            internals = symbol.get_internals()
            _, types, _ = internals.infer_type(data='float32')
            float_outputs = {name[:-len('_output')] for name, t in
                             zip(internals.list_outputs(), types)
                             if name.endswith('_output') and t == np.float32}
            self.float_layers = [(n['name'], n['op']) for n in nodes
                                 if n['op'] not in ('null', 'amp_cast', 'amp_multicast')
                                 and n['name'] in float_outputs]
        elif self.dtype == 'int8':
            self.float_layers = [(n['name'], n['op']) for n in nodes
                                 if n['op'] != 'null' and not _is_quantized(n)]
        else:
            self.float_layers = []

    def export(self, path, epoch=0, remove_amp_cast=False):
        """Write ``path-symbol.json`` and ``path-%04d.params`` (load them with
        ``mx.gluon.SymbolBlock.imports(json, ['data'], params)``).

        AMP's casts are kept (MXNet's default removes them, which would turn a bfloat16
        graph back into float32). A fused or int8 graph needs an MXNet built with oneDNN to
        load.
        """
        if not self._cached_op_args:
            # export() reads the parameters of the cached op: build it once.
            super().forward(mx.nd.zeros((1, 3, 64, 64), ctx=self._ctx()))
        return super().export(path, epoch, remove_amp_cast=remove_amp_cast)

    def predict(self, x):
        """Class ids (N, H, W) int32 for a normalized batch (N, 3, H, W)."""
        return self(x).argmax(axis=1).astype('int32')

    def _ctx(self):
        return next(iter(self.collect_params().values())).list_ctx()[0]

    def __repr__(self):
        return '%s(dtype=%r, classifier=%r, %d float layers)' % (
            self.__class__.__name__, self.dtype, self.classifier, len(self.float_layers))


def _is_quantized(node):
    """Whether a node of an int8 graph computes in int8 (or converts to or from it)."""
    op = node['op']
    return (op.startswith(('_contrib_quantize', '_contrib_quantized_'))
            or op in ('_contrib_dequantize', '_contrib_requantize')
            or node.get('attrs', {}).get('quantized') == 'true')


def optimize_segmentation(net, dtype='float32', calib_data=None, calib_mode='naive',
                          num_calib_batches=4, exclude_layers=None, ctx=None,
                          quantized_dtype='auto', static_alloc=True, float_classifier=True):
    """A faster inference version of a segmentation network (what :func:`gluonseg.optimize`
    returns for one).

    Parameters
    ----------
    net : HybridBlock
        An initialized network returning logits (N, C, H, W) for (N, 3, H, W) inputs, e.g. a
        gluonseg FCN, PSPNet or DeepLabV3 (only the main output is kept), or a
        ``SymbolBlock`` loaded from an export. It is not modified; the float32 result shares
        its parameters (oneDNN folds BatchNorm into the weights when it first runs: call
        ``optimize`` again after changing the weights), the others get their own copies.
    dtype : {'float32', 'bfloat16', 'int8'}
        Precision of the convolutions (see the module docstring for what each path does).
    calib_data : iterable, optional
        int8 only: batches (N, 3, H, W) as NDArrays or numpy arrays, or ``(data, label)``
        tuples (a ``DataLoader``), normalized like the model's inputs. All batches should
        have one shape. Required unless ``calib_mode='none'``.
    calib_mode : {'naive', 'entropy', 'none'}
        int8 only: thresholds from min/max (fast), from KL-divergence minimization
        (histograms, slower to calibrate), or computed at run time.
    num_calib_batches : int
        int8 only: use at most this many batches of ``calib_data``.
    exclude_layers : list of str, optional
        Node names (as in ``net(mx.sym.var('data')).tojson()``, e.g.
        ``'deeplabv30_deeplabhead0_aspp0_conv0_fwd'``) to keep in float32, in addition to
        the classifier (int8 and bfloat16).
    ctx : Context, default cpu()
        Only the CPU is supported for bfloat16 and int8 (MXNet 1.9.1's oneDNN); on a GPU,
        ``'float32'`` returns the graph hybridized without fusion.
    quantized_dtype : {'auto', 'int8', 'uint8'}
        int8 only: type of the quantized activations (``'auto'``: uint8 after ReLU, int8
        elsewhere).
    static_alloc : bool
        Hybridize with ``static_alloc`` (reuses memory between calls of the same shape; other
        shapes still work).
    float_classifier : bool
        bfloat16 and int8: keep the final 1x1 classifier in float32 (the default; it is
        about 0.01% of DeepLabV3-R101's multiply-adds). False converts it too, so that every
        convolution runs in the low precision.

    Returns
    -------
    OptimizedSegmentation
        Call it with an NDArray (N, 3, H, W) of any size; it returns float32 logits.

    Raises
    ------
    ValueError
        On an unknown ``dtype`` or ``calib_mode``, missing ``calib_data`` for a calibrated
        int8 model, bfloat16/int8 on a non-CPU context, or an uninitialized network.
    """
    if dtype not in DTYPES:
        raise ValueError('dtype must be one of %s, not %r' % (DTYPES, dtype))
    if calib_mode not in CALIB_MODES:
        raise ValueError('calib_mode must be one of %s, not %r' % (CALIB_MODES, calib_mode))
    ctx = ctx or mx.cpu()
    on_cpu = ctx.device_type == 'cpu'
    if dtype != 'float32' and not on_cpu:
        raise ValueError('%s inference needs the CPU (oneDNN) in MXNet 1.9.1, not %s'
                         % (dtype, ctx))
    check_initialized(net)
    symbol, data = inference_symbol(net)
    classifier = find_classifier(symbol)
    keep_float = ([classifier] if float_classifier else []) + list(exclude_layers or [])
    base = OptimizedSegmentation(symbol, data, params=net.collect_params(), dtype='float32',
                                 classifier=classifier)
    example = mx.nd.zeros((1, 3, 64, 64), ctx=ctx)

    with warnings.catch_warnings():
        # MXNet's SymbolBlocks warn that they cannot infer the input's type: it is float32.
        warnings.filterwarnings('ignore', message='Cannot decide type')
        if dtype == 'float32':
            model = base
        elif dtype == 'bfloat16':
            model = _to_bfloat16(base, keep_float, ctx, classifier)
        else:
            batches = calibration_batches(calib_data, num_calib_batches, calib_mode, ctx)
            model = _to_int8(base, keep_float, batches, calib_mode, quantized_dtype, ctx,
                             classifier)

    if on_cpu and dtype != 'int8':  # int8 graphs are fused by the quantization itself
        model.optimize_for(example, backend='MKLDNN', static_alloc=static_alloc)
    else:
        model.hybridize(static_alloc=static_alloc)
    model._refresh_float_layers()
    if on_cpu:
        inputs, out = cached_graph(model)
        model._final_resize = FinalResize.split(out, inputs[0].name, model.collect_params(),
                                                [('static_alloc', static_alloc)])
    return model


def _to_bfloat16(base, keep_float, ctx, classifier):
    # Concat added to the bfloat16 list: see the module docstring.
    target_ops = amp.list_lp16_ops(bfloat16) + ['Concat', 'concat']
    with warnings.catch_warnings():  # AMP warns about params it leaves in float32
        warnings.simplefilter('ignore', UserWarning)
        converted = amp.convert_hybrid_block(base, target_dtype='bfloat16',
                                             target_dtype_ops=target_ops,
                                             excluded_sym_names=keep_float, ctx=ctx,
                                             cast_optional_params=True)
    return _rewrap(converted, 'bfloat16', classifier, ctx)


def _rewrap(block, dtype, classifier, ctx):
    """The graph and parameters of a SymbolBlock made by AMP or quantization, as an
    OptimizedSegmentation. The parameters are copied with their dtypes (a SymbolBlock infers
    float32 for parameters that a cast follows, so they cannot be shared)."""
    inputs, out = cached_graph(block)
    model = OptimizedSegmentation(out, inputs, dtype=dtype, classifier=classifier)
    source = block.collect_params()
    values = {}
    for name, param in model.collect_params().items():
        value = source[name].data()
        if param.dtype != value.dtype:
            param.cast(value.dtype)
        values[name] = value
    model.collect_params().load_dict(values, ctx=ctx)
    return model


def _to_int8(base, keep_float, batches, calib_mode, quantized_dtype, ctx, classifier):
    base.hybridize()
    kwargs = dict(quantized_dtype=quantized_dtype, quantize_mode='smart',
                  exclude_layers=list(keep_float), calib_mode=calib_mode, ctx=ctx)
    if batches is None:
        kwargs['data_shapes'] = [mx.io.DataDesc('data', (1, 3, 64, 64))]
    else:
        # quantize_net_v2 iterates (data, ...) lists; num_calib_examples counts images.
        kwargs['calib_data'] = [[b] for b in batches]
        kwargs['num_calib_examples'] = sum(b.shape[0] for b in batches)
    quantized = quantize_net_v2(base, **kwargs)
    return _rewrap(quantized, 'int8', classifier, ctx)
