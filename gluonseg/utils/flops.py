"""Count the multiply-adds of a network's convolutions, dense layers and matrix products
from its graph."""
import collections
import json

import mxnet as mx
import numpy as np

__all__ = ['count_macs']


def count_macs(net, input_shape):
    """Multiply-accumulates of the Convolution, Deconvolution, FullyConnected and
    ``batch_dot`` operators of ``net`` for one input of ``input_shape`` (N, C, H, W), read from
    the symbolic graph (``batch_dot``: DANet's attention).

    Element-wise operators, pooling and resizing are not counted (they are a few percent of a
    segmentation network's work). GFLOP/s figures use 2 FLOPs per multiply-add.
    """
    sym = net(mx.sym.var('data'))
    if isinstance(sym, (list, tuple)):
        sym = mx.sym.Group(list(sym))
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape(data=tuple(input_shape))
    arg_shape = dict(zip(internals.list_arguments(), arg_shapes))
    # A block called twice in one graph (C4's stage 4 on the proposals and on the
    # detections, FPN's RPN head on every level) gives nodes of the same name: the graph's
    # nodes and its internal outputs are in the same order, so the k-th node of a name
    # owns the k-th output of that name.
    out_shape, seen = {}, collections.Counter()
    for name, shape in zip(internals.list_outputs(), out_shapes):
        out_shape[name, seen[name]] = shape
        seen[name] += 1
    nodes = json.loads(sym.tojson())['nodes']
    occurrence, seen = [], collections.Counter()
    for node in nodes:
        occurrence.append(seen[node['name']])
        seen[node['name']] += 1
    def input_shape_of(node, k):
        source = node['inputs'][k][0]
        if nodes[source]['op'] == 'null':
            return arg_shape[nodes[source]['name']]
        return out_shape[nodes[source]['name'] + '_output', occurrence[source]]

    total = 0
    for i, node in enumerate(nodes):
        if node['op'] == 'batch_dot':
            a = input_shape_of(node, 0)
            transpose_a = node.get('attrs', {}).get('transpose_a', 'False') in ('True', '1')
            output = out_shape[node['name'] + '_output', occurrence[i]]
            total += int(np.prod(output)) * int(a[-2] if transpose_a else a[-1])
            continue
        if node['op'] not in ('Convolution', 'Deconvolution', 'FullyConnected'):
            continue
        weight = arg_shape[nodes[node['inputs'][1][0]]['name']]
        if node['op'] == 'Deconvolution':
            # Every input element is spread over (out/groups) x kernel outputs.
            data_shape = input_shape_of(node, 0)
            total += int(np.prod(data_shape)) * int(np.prod(weight[1:]))
        else:
            output = out_shape[node['name'] + '_output', occurrence[i]]
            total += int(np.prod(output)) * int(np.prod(weight[1:]))
    return total

