"""Export a Mask R-CNN (C4 or FPN) to one ONNX graph, from the normalized image to the
detections.

    >>> net = gluonseg.get_model('mask_rcnn_fpn_resnet50_v1b_coco', pretrained=True)
    >>> export_onnx(net, 'mask_rcnn.onnx', input_shape=(1, 3, 800, 1088))  # any H, W at run time

:func:`~.onnx_export.export_onnx` comes here for a :class:`~.rcnn.mask_rcnn.MaskRCNN`.

The graph
---------
Input ``data``: one normalized image, (1, 3, height, width), height and width dynamic.
Outputs, what ``net(x)`` returns (:mod:`.rcnn.mask_rcnn`), K = the post-processor's
``max_dets`` rows (1000 for the published models):

* ``ids`` (1, K, 1) float class index, -1 in an empty row;
* ``scores`` (1, K, 1), best first, -1 in an empty row;
* ``boxes`` (1, K, 4) x1, y1, x2, y2 in the pixels of ``data``, not clipped;
* ``masks`` (1, K, M, M) the mask probabilities of each row's class inside its box, 0.5 in
  an empty row (M = ``net.mask_size``).

Inside the graph: backbone, RPN (anchors cropped from the stored grid to the feature maps'
run-time size, box decoding, clipping to the image, NMS), RoIAlign, box head, softmax,
per-class box decoding, per-class NMS, the top K, mask head and the choice of each row's
class mask. Outside it: resizing the image and normalizing it before; after, keeping the
rows above a score threshold, scaling the boxes back and pasting the M x M masks into the
image (NumPy only: :func:`gluonseg.utils.paste.paste_detections`).

One image per run (batch 1): the input's batch dimension is fixed at 1.
``net.detect(x, score_thresh, max_dets)`` keeps the first rows scoring at least
``score_thresh`` of these same K rows; a deployment does that on the outputs. Where
several candidates have exactly the same score across the K-th row, the graph keeps them
in index order (ONNX ``TopK``) and MXNet in its sort's order, so those last tied rows may
differ; every other row is the same.

Opset 13 by default (13 to the installed onnx's latest). The ONNX operators of the
detection part are ``NonMaxSuppression``, ``RoiAlign``, ``TopK``, ``GatherND``,
``GatherElements``, ``ScatterND``, ``Where``, ``Equal`` and shape arithmetic
(``Shape``, ``Slice``, ``Concat``, ``Range``).

Converters
----------
MXNet 1.9.1's exporter cannot export this graph (its ``Reshape`` converter refuses the codes
-2, -3 and -4, and its ``box_nms``, ``ROIAlign`` and ``one_hot`` converters compute
something else, below), so these are registered for the export, beside
:func:`~.onnx_export.onnx_converters`' (MXNet's registry is restored after):

``Reshape`` with MXNet's special codes (0, -1, -2, -3, -4)
    The target shape is built at run time from ``Shape(x)`` (slices, products and
    quotients of the input's dimensions), so it follows the image size.
``_contrib_ROIAlign`` (``aligned=False``, ``sample_ratio`` s)
    ``RoiAlign`` (``mode='avg'``, ``sampling_ratio`` = s, or 0 (adaptive, MXNet's
    ``sample_ratio`` <= 0), no half-pixel shift: the opset-10 form below opset 16,
    ``coordinate_transformation_mode='output_half_pixel'`` from opset 16; opset 16's
    default, ``half_pixel``, would shift every sample by half a cell). MXNet skips a RoI whose
    batch index is negative (the FPN models pool each RoI on its own level this way); ONNX
    refuses such an index, so it is clamped to 0 and the RoI's block set to zero (MXNet
    leaves it unwritten; the model zeroes it, see :class:`~.rcnn.roi_align.RoIAlignExtractor`,
    which also explains why its first RoI is pooled a second time: that is MXNet's bug,
    which ONNX's ``RoiAlign`` does not have).
``one_hot``
    ``Equal(index, range(depth))``: an index outside ``[0, depth)`` (the -1 of an empty
    row) gives a row of ``off_value``, as in MXNet; ONNX ``OneHot`` would wrap -1 to the
    last class.
``_contrib_box_nms`` (the RPN's NMS, and the per-class NMS of the detections)
    MXNet's ``box_nms`` on rows (B, N, K): the rows whose score exceeds ``valid_thresh`` (and,
    with ``id_index`` >= 0, whose class is not ``background_id``) take part, sorted by
    score (ties: row order), the first ``topk`` of them (-1: all); going down that order, a
    row is dropped when its IoU with a kept row exceeds ``overlap_thresh`` (with ``id_index``
    >= 0 and ``force_suppress=False``: a kept row of the same class). The output has the
    kept rows best first, then rows of -1. MXNet's own converter gives ``topk`` to
    ``NonMaxSuppression`` as its output limit (so more than ``topk`` rows take part: all
    267069 anchors of an FPN model at 800 x 1333 instead of the best 6000) and lets every
    class suppress every other.

    Here, exactly (bit for bit in ``tests/test_onnx_mask_rcnn.py``):

    1. ``TopK`` of the scores, non-taking rows at -inf, k = min(``topk``, N): the taking part
       rows in MXNet's order (ONNX ``TopK`` puts equal values in index order, as MXNet's
       stable sort);
    2. ``NonMaxSuppression`` on those k boxes, ``iou_threshold`` = ``overlap_thresh``
       (both suppress when the IoU is strictly greater, both compute it in float32 as
       intersection / (area + area - intersection) with areas ``w * h``), scored by rank
       (k, k - 1, ..., 1) instead of by score: ONNX does not define the order of equal
       scores (onnxruntime's queue compares scores only; 1.15.1 happens to pop equal ones
       in index order in the tests), ranks make it MXNet's; rows not taking part score
       -inf under a ``score_threshold`` of the lowest float32;
    3. classes (``id_index`` >= 0 and ``force_suppress=False``): ``NonMaxSuppression``'s
       class axis, D = the largest taking-part class + 1 classes, row j scored in its own
       class only (a (B, D, k) score tensor: 80 x 80 x 1000 for the published models'
       per-class NMS, whose B rows each hold one class);
    4. a box with negative width or height: MXNet gives it area 0, so it neither suppresses
       nor is suppressed; ``NonMaxSuppression`` would reorder its corners (and give it
       area), so it gets no extent (x1, y1, x1, y1) in the NMS input, the output row keeps
       its values;
    5. the kept rows (``ScatterND`` of the selected indices), best first by ``TopK`` over
       all N rows, then -1 rows.

    ``in_format``/``out_format`` ``'center'`` are refused (Mask R-CNN uses corners).

Any other operator goes through MXNet's converters, with gluonseg's ``Resize`` and
``Expand`` forms of :func:`~.onnx_export.onnx_converters`.

Differences from ``net(x)``
---------------------------
None by construction beyond float32 rounding (the convolutions, and RoiAlign's sums, in
another order): the tests compare onnxruntime's detections with ``net(x)``'s and
``net.detect``'s as sets (classes, boxes IoU > 0.99, scores and masks within 1e-3), for
the golden C4 and FPN ResNet-18 weights at two image sizes. Rows of (nearly) equal score
may come in another order. A model built with ``gluoncv_roi_quirk=True`` exports the
correct pooling (ONNX has no such bug), so its first RoI differs from its ``net(x)``.

Cost: the graph is ``net(x)``'s, so it does the raw contract's work (every proposal
through the box head; C4: stage 4 on each proposal and on each of the K rows), and an FPN
model pools every RoI on each of its four levels (the graph form of
:class:`~.rcnn.roi_align.RoIAlignExtractor`), four times the RoiAlign work of pooling
each RoI on its own level, plus the first RoI again. ``rpn_test_post_nms`` (fewer
proposals) makes it cheaper.

Every node of the graph feeds an output: onnxruntime 1.15.1's memory patterns (on by
default) failed every run after the first when one node did not.

Running it::

    import onnxruntime as ort
    session = ort.InferenceSession('mask_rcnn.onnx', providers=['CPUExecutionProvider'])
    ids, scores, boxes, masks = session.run(['ids', 'scores', 'boxes', 'masks'],
                                            {'data': image[None].astype('float32')})
"""
import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import convert_reshape

from .onnx_export import (DEFAULT_OPSET, INPUT_NAME, _Graph, _inputs, declare_dims,
                          symbol_to_onnx)

__all__ = ['export_mask_rcnn', 'DETECTION_OUTPUTS', 'detection_converters']

DETECTION_OUTPUTS = ('ids', 'scores', 'boxes', 'masks')
_INT64_MAX = np.iinfo(np.int64).max


def export_mask_rcnn(net, path, input_shape=(1, 3, 480, 480), dynamic=True,
                     opset=DEFAULT_OPSET):
    """Write ``net(x)`` of a Mask R-CNN, for one image, to an ONNX file (module docstring).

    Parameters
    ----------
    net : MaskRCNN
        An initialized float32 Mask R-CNN.
    path : str
        The ``.onnx`` file to write.
    input_shape : tuple of 4 int
        (1, 3, H, W) of the example input: the shape written into the file when
        ``dynamic=False``, otherwise only used to build the graph.
    dynamic : bool
        Declare the height and width as symbolic (``height``, ``width``).
    opset : int
        ONNX opset (13 to the installed onnx's latest).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        For an ``input_shape`` other than (1, 3, H, W) or an opset below 13.
    """
    import onnx  # lazy: optional, pip install onnx
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or input_shape[:2] != (1, 3):
        raise ValueError('A Mask R-CNN exports for one image at a time: input_shape must be '
                         '(1, 3, H, W), got %s' % (input_shape,))
    if opset < 13:
        raise ValueError('Mask R-CNN export needs ONNX opset 13 or later, got %d' % opset)
    symbol = _detection_symbol(net)
    model = symbol_to_onnx(symbol, net, input_shape, opset,
                           (1, 3, None, None) if dynamic else None, detection_converters())
    _, out_shapes, _ = symbol.infer_shape(**{INPUT_NAME: input_shape})
    _name_outputs(model, [name[:-len('_output')] for name in symbol.list_outputs()],
                  out_shapes)
    if dynamic:
        declare_dims(model.graph.input[0], (1, 3, 'height', 'width'))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _detection_symbol(net):
    """``net(x)`` on the symbol ``data``: the group of ids, scores, boxes and masks."""
    data = mx.sym.var(INPUT_NAME)
    with autograd.predict_mode():
        outputs = net(data)
    return mx.sym.Group(list(outputs))


def _name_outputs(model, mxnet_names, shapes):
    """Rename the graph's outputs (MXNet's names, which it lists sorted) to
    :data:`DETECTION_OUTPUTS`, in that order, with their static shapes."""
    from onnx import helper  # lazy: optional, pip install onnx
    renamed = dict(zip(mxnet_names, DETECTION_OUTPUTS))
    for node in model.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    elem_type = model.graph.output[0].type.tensor_type.elem_type
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(name, elem_type, shape)
                              for name, shape in zip(DETECTION_OUTPUTS, shapes))


def detection_converters():
    """``{MXNet operator: converter}`` of this module (module docstring), for
    :func:`~.onnx_export.onnx_converters`."""
    return {'Reshape': _convert_reshape, '_contrib_ROIAlign': _convert_roi_align,
            'one_hot': _convert_one_hot, '_contrib_box_nms': _convert_box_nms}


class _DetectionGraph(_Graph):
    """:class:`~.onnx_export._Graph` with nodes of several outputs."""

    def ops(self, op_type, inputs, count, **attrs):
        outputs = ['%s_%s%d_%d' % (self.name, op_type.lower(), self._count, i)
                   for i in range(count)]
        self._count += 1
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outputs, **attrs))
        return outputs

    def slice(self, tensor, start, end, axis):
        return self.op('Slice', [tensor, self.const([start]), self.const([end]),
                                 self.const([axis])])


def _attr_tuple(text):
    return tuple(int(v) for v in text.strip('()[] ').split(',') if v.strip())


def _convert_reshape(node, **kwargs):
    """``Reshape`` with MXNet's codes 0 (copy), -1 (infer), -2 (copy the rest), -3 (merge
    two), -4 (split one in two); the target shape is computed from ``Shape(x)``."""
    name, inputs, attrs = _inputs(node, kwargs)
    spec = _attr_tuple(attrs.get('shape', '()'))
    if attrs.get('reverse', 'False') in ('True', 'true', '1') or min(spec, default=0) >= -1:
        return convert_reshape(node, **kwargs)  # ONNX's 0 and -1 are MXNet's here
    g = _DetectionGraph(name, kwargs)
    shape = g.op('Shape', inputs[:1])
    pieces, source, i = [], 0, 0
    while i < len(spec):
        code = spec[i]
        if source is None and code in (0, -3, -4):
            raise NotImplementedError('Reshape %s: code %d after -2' % (name, code))
        if code == 0:
            pieces.append(g.slice(shape, source, source + 1, 0))
            source += 1
        elif code == -2:
            pieces.append(g.slice(shape, source, _INT64_MAX, 0))
            source = None
        elif code == -3:
            pieces.append(g.op('Mul', [g.slice(shape, source, source + 1, 0),
                                       g.slice(shape, source + 1, source + 2, 0)]))
            source += 2
        elif code == -4:
            first, second = spec[i + 1], spec[i + 2]
            if -1 in (first, second):  # the other one divides the dimension
                known = g.const([first * second * -1])
                inferred = g.op('Div', [g.slice(shape, source, source + 1, 0), known])
                pieces += [inferred, known] if first == -1 else [known, inferred]
            else:
                pieces.append(g.const([first, second]))
            source += 1
            i += 2
        else:  # a size or -1 (inferred): either takes the place of one input dimension
            pieces.append(g.const([code]))
            source = None if source is None else source + 1
        i += 1
    g.op('Reshape', [inputs[0], g.op('Concat', pieces, axis=0)], output=name, name=name)
    return g.nodes


def _convert_roi_align(node, **kwargs):
    """``ROIAlign(aligned=False)`` as ``RoiAlign`` (avg) without the half-pixel shift;
    RoIs with a negative batch index give zeros."""
    name, inputs, attrs = _inputs(node, kwargs)
    if attrs.get('aligned', 'False') not in ('False', 'false', '0') or \
            attrs.get('position_sensitive', 'False') not in ('False', 'false', '0'):
        raise NotImplementedError('ROIAlign %s: only aligned=False, position_sensitive=False '
                                  'have an exact ONNX form here' % name)
    pooled = _attr_tuple(attrs['pooled_size'])
    g = _DetectionGraph(name, kwargs)
    rois = inputs[1]
    batch = g.op('Gather', [rois, g.const(0)], axis=1)                            # (R,)
    index = g.op('Cast', [g.op('Max', [batch, g.const(0, 'float32')])], to=7)     # int64
    mode = {} if kwargs['opset_version'] < 16 else \
        dict(coordinate_transformation_mode='output_half_pixel')
    pooled_rois = g.op('RoiAlign', [inputs[0], g.slice(rois, 1, 5, 1), index], mode='avg',
                       output_height=pooled[0], output_width=pooled[-1],
                       sampling_ratio=max(int(attrs.get('sample_ratio', '-1')), 0),
                       spatial_scale=float(attrs['spatial_scale']), **mode)
    skipped = g.op('Reshape', [g.op('Less', [batch, g.const(0, 'float32')]),
                               g.const([-1, 1, 1, 1])])
    g.op('Where', [skipped, g.const(0, 'float32'), pooled_rois], output=name, name=name)
    return g.nodes


def _convert_one_hot(node, **kwargs):
    """``one_hot``: an index outside ``[0, depth)`` gives ``off_value`` everywhere."""
    name, inputs, attrs = _inputs(node, kwargs)
    depth = int(attrs['depth'])
    dtype = attrs.get('dtype', 'float32')
    g = _DetectionGraph(name, kwargs)
    index = g.op('Unsqueeze', [g.op('Cast', inputs[:1], to=7), g.const([-1])])
    hot = g.op('Equal', [index, g.const(np.arange(depth))])
    g.op('Where', [hot, g.const(float(attrs.get('on_value', 1)), dtype),
                   g.const(float(attrs.get('off_value', 0)), dtype)], output=name, name=name)
    return g.nodes


def _convert_box_nms(node, **kwargs):
    """``box_nms`` on corner boxes through ``NonMaxSuppression``, with MXNet's candidates,
    order, classes and output (module docstring)."""
    name, inputs, attrs = _inputs(node, kwargs)
    if attrs.get('in_format', 'corner') != 'corner' or \
            attrs.get('out_format', 'corner') != 'corner':
        raise NotImplementedError('box_nms %s: only corner boxes are converted' % name)
    score_index = int(attrs.get('score_index', '1'))
    coord_start = int(attrs.get('coord_start', '2'))
    id_index = int(attrs.get('id_index', '-1'))
    topk = int(attrs.get('topk', '-1'))
    by_class = id_index >= 0 and attrs.get('force_suppress', 'False') in ('False', 'false', '0')
    g = _DetectionGraph(name, kwargs)
    minus_inf = g.const(-np.inf, 'float32')
    shape = g.op('Shape', inputs[:1])
    rows = g.op('Reshape', [inputs[0], g.op('Concat', [g.const([-1]),
                                                     g.slice(shape, -2, _INT64_MAX, 0)],
                                            axis=0)])                               # (B, N, K)
    scores = g.op('Gather', [rows, g.const(score_index)], axis=2)                    # (B, N)
    taking_part = g.op('Greater', [scores, g.const(float(attrs.get('valid_thresh', 0)),
                                                   'float32')])
    if id_index >= 0:
        ids = g.op('Gather', [rows, g.const(id_index)], axis=2)
        background = g.const(float(attrs.get('background_id', -1)), 'float32')
        taking_part = g.op('And', [taking_part, g.op('Not', [g.op('Equal', [ids, background])])])
    count = g.slice(shape, -2, -1, 0)                                                # [N]
    k = count if topk <= 0 else g.op('Min', [count, g.const([topk])])
    # 1. the taking-part rows, best first, ties in row order
    top_scores, top_rows = g.ops('TopK', [g.op('Where', [taking_part, scores, minus_inf]), k],
                                 2, axis=1, largest=1, sorted=1)                    # (B, k)
    top_taking_part = g.op('Greater', [top_scores, minus_inf])
    boxes = g.op('GatherND', [g.slice(rows, coord_start, coord_start + 4, 2),
                              g.op('Unsqueeze', [top_rows, g.const([2])])], batch_dims=1)
    # 4. no extent for a box with a negative side (MXNet's area 0)
    corner, far_corner = g.slice(boxes, 0, 2, 2), g.slice(boxes, 2, 4, 2)
    sides = g.op('Sub', [far_corner, corner])
    inverted = g.op('Less', [g.op('Min', [g.slice(sides, 0, 1, 2), g.slice(sides, 1, 2, 2)]),
                             g.const(0, 'float32')])                                # (B, k, 1)
    boxes = g.op('Where', [inverted, g.op('Concat', [corner, corner], axis=2), boxes])
    # 2. scored by rank, so that the NMS visits them in this order
    rank = g.op('Cast', [g.op('Range', [g.op('Squeeze', [k, g.const([0])]), g.const(0),
                                        g.const(-1)])], to=1)                         # (k,)
    rank = g.op('Where', [top_taking_part, rank, minus_inf])                         # (B, k)
    rank = g.op('Unsqueeze', [rank, g.const([1])])                                   # (B, 1, k)
    if by_class:  # 3. one NMS class per MXNet class id
        top_ids = g.op('Cast', [g.op('GatherElements', [ids, top_rows], axis=1)], to=7)
        top_ids = g.op('Where', [top_taking_part, top_ids, g.const(-1)])
        num_ids = g.op('Add', [g.op('ReduceMax', [top_ids], keepdims=0), g.const(1)])
        classes = g.op('Range', [g.const(0), g.op('Max', [num_ids, g.const(1)]), g.const(1)])
        same = g.op('Equal', [g.op('Unsqueeze', [top_ids, g.const([1])]),
                              g.op('Unsqueeze', [classes, g.const([0, 2])])])       # (B, D, k)
        rank = g.op('Where', [same, rank, minus_inf])
    selected = g.op('NonMaxSuppression', [
        boxes, rank, k, g.const([float(attrs.get('overlap_thresh', 0.5))], 'float32'),
        g.const([np.finfo(np.float32).min], 'float32')])                            # (S, 3)
    # 5. the kept rows best first, then -1 rows
    image = g.op('Gather', [selected, g.const([0])], axis=1)                         # (S, 1)
    kept_rows = g.op('GatherND', [top_rows, g.op('Gather', [selected, g.const([0, 2])],
                                                 axis=1)])                          # (S,)
    kept = g.op('ScatterND', [
        g.op('ConstantOfShape', [g.op('Shape', [scores])],
             value=g.numpy_helper.from_array(np.zeros(1, np.float32))),
        g.op('Concat', [image, g.op('Unsqueeze', [kept_rows, g.const([1])])], axis=1),
        g.op('ConstantOfShape', [g.op('Shape', [kept_rows])],
             value=g.numpy_helper.from_array(np.ones(1, np.float32)))])             # (B, N)
    kept_scores, order = g.ops('TopK', [
        g.op('Where', [g.op('Cast', [kept], to=9), scores, minus_inf]), count], 2,
        axis=1, largest=1, sorted=1)
    ordered = g.op('GatherND', [rows, g.op('Unsqueeze', [order, g.const([2])])], batch_dims=1)
    is_kept = g.op('Unsqueeze', [g.op('Greater', [kept_scores, minus_inf]), g.const([2])])
    out = g.op('Where', [is_kept, ordered, g.const(-1, 'float32')])
    # output 0 of the two (MXNet's second, the kept rows' indices, is not used here)
    g.op('Reshape', [out, shape], output=name + '0', name=name)
    return g.nodes
