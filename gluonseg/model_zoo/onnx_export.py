"""Export gluonseg's semantic models to ONNX with a dynamic batch and input size (Mask R-CNN:
:mod:`.onnx_detection`, through the same :func:`export_onnx`).

    >>> net = gluonseg.get_model('psp_resnet101_voc', pretrained=True)
    >>> export_onnx(net, 'psp.onnx', input_shape=(1, 3, 480, 480))   # any N, H, W at run time

MXNet 1.9.1's exporter (``mx.onnx``) cannot export two operators of these networks, so this
module registers converters for them while it exports (MXNet's registry is restored after):

``BilinearResize2D(mode='like')`` (every model's final resize, PSPNet's pyramid)
    MXNet's converter fails on it (``AttributeError: height, width or scale_height,
    scale_width cannot be 0``, and then ``NotImplementedError`` for any mode but
    ``'size'``). Here: an
    ONNX ``Resize`` (``linear``, ``align_corners``, as MXNet computes it) whose ``sizes`` are
    ``Shape(x)[0:2] ++ Shape(like)[2:4]``, so it follows the input size at run time.
``AdaptiveAvgPooling2D(output_size=k)`` with k > 1 (PSPNet's bins 2, 3 and 6)
    MXNet's converter handles only k = 1 (``GlobalAveragePool``). Here, exactly and for any
    input size: bin ``i`` of an axis of length ``L`` spans ``[floor(i L / k), ceil((i+1) L / k))``
    as in MXNet, so the pooling is ``P_h @ x @ P_w^T`` with ``P[i, p] = 1 / |bin i|`` for ``p``
    in bin ``i``; the (k, L) matrices are built in the graph from ``Shape(x)`` (``Range``,
    comparisons, ``Cast``, ``Div``) and applied with two ``MatMul`` (a few MFLOP).

``broadcast_like`` (DeepLabV3's image pooling) is exported by MXNet through
``GatherND``/``ScatterND``; here it is a plain ``Expand`` to ``Shape(x)[0:2] ++
Shape(like)[2:4]``, which TensorRT also parses.

With these, all three methods export with a dynamic batch, height and width (input
``data`` of shape ``(batch, 3, height, width)``, output ``logits`` of shape
``(batch, nclass, height, width)``),
at ONNX opset 13 by default. The graph is float32 (export the float32 network, not an
:func:`~gluonseg.model_zoo.optimize.optimize` result: oneDNN's fused and int8 operators have no
ONNX form; quantize or use fp16 in the target runtime instead).

Running the exported model
--------------------------
onnxruntime (CPU; ``onnxruntime-gpu`` for CUDA, same API)::

    import onnxruntime as ort
    session = ort.InferenceSession('psp.onnx', providers=[
        'CUDAExecutionProvider', 'CPUExecutionProvider'])        # first available wins
    logits = session.run(['logits'], {'data': image_batch.astype('float32')})[0]

TensorRT (``trtexec`` from the TensorRT package; dynamic shapes need a profile)::

    trtexec --onnx=psp.onnx --saveEngine=psp.plan --fp16 \\
        --minShapes=data:1x3x256x256 --optShapes=data:1x3x480x480 --maxShapes=data:4x3x1024x1024

or onnxruntime's ``TensorrtExecutionProvider``. See ``docs/deploy.md``.

onnxruntime's wheels for Python 3.11 declare ``numpy>=1.24.2``, which MXNet 1.9.1 cannot
import (it uses ``np.bool``): install it with ``pip install --no-deps onnxruntime==1.15.1``
beside numpy 1.23.5 (it runs correctly there), or run the exported file in another
environment.
"""
import contextlib
import json

import mxnet as mx
import numpy as np
from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import (
    convert_broadcast_like, convert_contrib_BilinearResize2D)

from .optimize import inference_symbol
from .rcnn.mask_rcnn import MaskRCNN

__all__ = ['export_onnx', 'DEFAULT_OPSET', 'INPUT_NAME', 'OUTPUT_NAME', 'onnx_converters',
           'symbol_to_onnx', 'declare_dims']

DEFAULT_OPSET = 13
INPUT_NAME, OUTPUT_NAME = 'data', 'logits'


def export_onnx(net, path, input_shape=(1, 3, 480, 480), dynamic=True, opset=DEFAULT_OPSET):
    """Write the inference graph of ``net`` (main output only) to an ONNX file.

    Parameters
    ----------
    net : HybridBlock
        An initialized float32 gluonseg semantic model or Mask R-CNN (or a ``SymbolBlock``
        imported from their export). A ``MaskRCNN`` goes to
        :func:`~.onnx_detection.export_mask_rcnn` (one image in, its detections out).
    path : str
        The ``.onnx`` file to write.
    input_shape : tuple of 4 int
        (N, 3, H, W) of the example input: the shape written into the file when
        ``dynamic=False``, otherwise only used to check the graph.
    dynamic : bool
        Declare the batch, height and width as symbolic (``batch``, ``height``, ``width``),
        so one file takes any size.
    opset : int
        ONNX opset (13 to the installed onnx's latest).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ImportError
        When ``onnx`` is not installed (``pip install gluonseg[onnx]``).
    ValueError
        For a graph with oneDNN-only operators (an optimized model) or a wrong
        ``input_shape``.
    """
    try:
        import onnx  # lazy: optional, pip install onnx
    except ImportError as error:
        raise ImportError('export_onnx needs the onnx package: pip install "onnx==1.14.1" '
                          '(or gluonseg[onnx])') from error
    if isinstance(net, MaskRCNN):  # one image to its detections: .onnx_detection
        from .onnx_detection import export_mask_rcnn  # lazy: it imports this module
        return export_mask_rcnn(net, path, input_shape, dynamic, opset)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or input_shape[1] != 3:
        raise ValueError('input_shape must be (N, 3, H, W), got %s' % (input_shape,))
    symbol, _ = inference_symbol(net)
    ops = {n['op'] for n in _nodes(symbol)}
    backend_ops = sorted(op for op in ops if op.startswith('_sg_') or 'quantize' in op)
    if backend_ops:
        raise ValueError('the graph holds oneDNN-only operators %s (an optimized model?): '
                         'export the float32 network instead' % backend_ops)
    model = symbol_to_onnx(symbol, net, input_shape, opset,
                           (None, 3, None, None) if dynamic else None)
    _rename_output(model, OUTPUT_NAME)
    if dynamic:
        _, (out_shape,), _ = symbol.infer_shape(data=input_shape)
        declare_dims(model.graph.input[0], ('batch', 3, 'height', 'width'))
        declare_dims(model.graph.output[0], ('batch', out_shape[1], 'height', 'width'))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _nodes(symbol):
    return json.loads(symbol.tojson())['nodes']


def symbol_to_onnx(symbol, net, input_shape, opset, dynamic_input_shape=None,
                   converters=None):
    """The ONNX model of the inference ``symbol`` (input ``data``) with ``net``'s weights as
    constants, through MXNet's exporter and gluonseg's converters (and ``converters``).
    ``dynamic_input_shape``: the input shape with None for each dynamic axis (None: the
    static ``input_shape``)."""
    import onnx  # lazy: optional, pip install onnx
    from onnx import helper  # lazy: optional, pip install onnx
    used = set(symbol.list_inputs())
    params = {name: param.data().as_in_context(mx.cpu())
              for name, param in net.collect_params().items() if name in used}
    dynamic = dynamic_input_shape is not None
    with onnx_converters(opset, converters):
        graph = MXNetGraph().create_onnx_graph_proto(
            symbol, params, [input_shape], [onnx.TensorProto.FLOAT], opset_version=opset,
            dynamic=dynamic, dynamic_input_shapes=[dynamic_input_shape] if dynamic else None)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)],
                              producer_name='gluonseg')
    _weights_as_constants(model)
    return model


def _weights_as_constants(model):
    """Drop the weights from the graph inputs of an exported model: MXNet lists them as
    inputs too; as pure initializers they are constants (onnxruntime folds them, TensorRT
    needs them so). Drop the constants no node reads: MXNet's converters of split, softmax
    and others leave some, and onnxruntime warns about each."""
    weights = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    read = {name for node in model.graph.node for name in node.input}
    constants = [tensor for tensor in model.graph.initializer if tensor.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(constants)


def _rename_output(model, name):
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if out == old else out for out in node.output]
    model.graph.output[0].name = name


def declare_dims(value, sizes):
    """Set the dimensions of a graph input or output: an int is fixed, a str symbolic."""
    for dim, size in zip(value.type.tensor_type.shape.dim, sizes):
        dim.Clear()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size


@contextlib.contextmanager
def onnx_converters(opset=DEFAULT_OPSET, extra=None):
    """Register gluonseg's converters in MXNet's ONNX registry for the duration of the block
    (for ``mx.onnx.export_model`` too), restoring MXNet's afterwards; ``extra``
    (``{operator: converter}``) is registered too."""
    converters = {'_contrib_BilinearResize2D': _convert_bilinear_resize,
                  '_contrib_AdaptiveAvgPooling2D': _convert_adaptive_avg_pooling,
                  'broadcast_like': _convert_broadcast_like, **(extra or {})}
    table = MXNetGraph.registry_.setdefault(opset, {})
    saved = {op: table[op] for op in converters if op in table}
    table.update(converters)
    try:
        yield
    finally:
        for op in converters:
            if op in saved:
                table[op] = saved[op]
            else:
                table.pop(op, None)


class _Graph:
    """Node and constant builder for one converted MXNet node (unique names from its name)."""

    def __init__(self, name, kwargs):
        from onnx import helper, numpy_helper  # lazy: optional, pip install onnx
        self.helper, self.numpy_helper = helper, numpy_helper
        self.name = name
        self.initializer = kwargs['initializer']
        self.nodes = []
        self._count = 0

    def const(self, value, dtype='int64'):
        name = '%s_const%d' % (self.name, self._count)
        self._count += 1
        self.initializer.append(self.numpy_helper.from_array(np.array(value, dtype=dtype),
                                                             name))
        return name

    def op(self, op_type, inputs, output=None, **attrs):
        if output is None:
            output = '%s_%s%d' % (self.name, op_type.lower(), self._count)
            self._count += 1
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], **attrs))
        return output

    def shape_slice(self, tensor, start, end):
        """``Shape(tensor)[start:end]`` as an int64 vector."""
        return self.op('Slice', [self.op('Shape', [tensor]), self.const([start]),
                                 self.const([end]), self.const([0])])


def _inputs(node, kwargs):
    lookup = kwargs['outputs_lookup']
    names = [lookup[i][j].name for i, j, *_ in node['inputs']]
    return node['name'], names, node.get('attrs', {})


def _convert_bilinear_resize(node, **kwargs):
    """``BilinearResize2D`` in ``like`` mode (and ``size``/scale modes) as ONNX ``Resize``."""
    name, inputs, attrs = _inputs(node, kwargs)
    if attrs.get('mode', 'size') != 'like':
        return convert_contrib_BilinearResize2D(node, **kwargs)
    if attrs.get('align_corners', 'True') not in ('True', 'true', '1'):
        raise NotImplementedError('BilinearResize2D(mode="like", align_corners=False) has no '
                                  'exact ONNX form here (%s)' % name)
    g = _Graph(name, kwargs)
    sizes = g.op('Concat', [g.shape_slice(inputs[0], 0, 2), g.shape_slice(inputs[1], 2, 4)],
                 axis=0)
    g.op('Resize', [inputs[0], g.const([], 'float32'), g.const([], 'float32'), sizes],
         output=name, name=name, mode='linear', coordinate_transformation_mode='align_corners')
    return g.nodes


def _pooling_matrix(g, data, axis, bins):
    """(bins, L) float32 matrix averaging each of MXNet's adaptive bins along ``axis`` of
    ``data`` (L = its length at run time)."""
    length = g.op('Gather', [g.op('Shape', [data]), g.const(axis)], axis=0)  # scalar
    index = g.const(np.arange(bins).reshape(bins, 1))
    start = g.op('Div', [g.op('Mul', [index, length]), g.const(bins)])            # floor
    end = g.op('Div', [g.op('Add', [g.op('Mul', [g.const(np.arange(1, bins + 1)
                                                          .reshape(bins, 1)), length]),
                                     g.const(bins - 1)]), g.const(bins)])       # ceil
    position = g.op('Unsqueeze', [g.op('Range', [g.const(0), length, g.const(1)]),
                                  g.const([0])])                                 # (1, L)
    inside = g.op('And', [g.op('GreaterOrEqual', [position, start]),
                          g.op('Less', [position, end])])                         # (bins, L)
    count = g.op('Cast', [g.op('Sub', [end, start])], to=1)
    return g.op('Div', [g.op('Cast', [inside], to=1), count])


def _convert_adaptive_avg_pooling(node, **kwargs):
    """``AdaptiveAvgPooling2D`` for any output size, exact for any input size."""
    name, inputs, attrs = _inputs(node, kwargs)
    size = [int(s) for s in attrs.get('output_size', '1').strip('()[] ').split(',') if s.strip()]
    out_h, out_w = (size[0], size[0]) if len(size) == 1 else size
    g = _Graph(name, kwargs)
    if out_h == out_w == 1:
        g.op('GlobalAveragePool', inputs[:1], output=name, name=name)
        return g.nodes
    rows = _pooling_matrix(g, inputs[0], 2, out_h)                              # (kh, H)
    cols = g.op('Transpose', [_pooling_matrix(g, inputs[0], 3, out_w)], perm=[1, 0])  # (W, kw)
    pooled_w = g.op('MatMul', [inputs[0], cols])                                # (N, C, H, kw)
    g.op('MatMul', [rows, pooled_w], output=name, name=name)                    # (N, C, kh, kw)
    return g.nodes


def _convert_broadcast_like(node, **kwargs):
    """``broadcast_like(x, like, lhs_axes=(2, 3), rhs_axes=(2, 3))`` as an ``Expand``; other
    axes go to MXNet's converter."""
    name, inputs, attrs = _inputs(node, kwargs)
    axes = (attrs.get('lhs_axes', 'None').replace(' ', ''),
            attrs.get('rhs_axes', 'None').replace(' ', ''))
    if axes != ('(2,3)', '(2,3)'):
        return convert_broadcast_like(node, **kwargs)
    g = _Graph(name, kwargs)
    shape = g.op('Concat', [g.shape_slice(inputs[0], 0, 2), g.shape_slice(inputs[1], 2, 4)],
                 axis=0)
    g.op('Expand', [inputs[0], shape], output=name, name=name)
    return g.nodes
