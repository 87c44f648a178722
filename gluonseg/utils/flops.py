"""Count the multiply-adds of a network's convolutions and dense layers from its graph."""
import json

import mxnet as mx
import numpy as np

__all__ = ['count_macs']


def count_macs(net, input_shape):
    """Multiply-accumulates of the Convolution, Deconvolution and FullyConnected operators of
    ``net`` for one input of ``input_shape`` (N, C, H, W), read from the symbolic graph.

    Element-wise operators, pooling and resizing are not counted (they are a few percent of a
    segmentation network's work). GFLOP/s figures use 2 FLOPs per multiply-add.
    """
    sym = net(mx.sym.var('data'))
    if isinstance(sym, (list, tuple)):
        sym = mx.sym.Group(list(sym))
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape(data=tuple(input_shape))
    arg_shape = dict(zip(internals.list_arguments(), arg_shapes))
    out_shape = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())['nodes']
    total = 0
    for node in nodes:
        if node['op'] not in ('Convolution', 'Deconvolution', 'FullyConnected'):
            continue
        weight_name = nodes[node['inputs'][1][0]]['name']
        weight = arg_shape[weight_name]
        if node['op'] == 'Deconvolution':
            # Every input element is spread over (out/groups) x kernel outputs.
            data_name = nodes[node['inputs'][0][0]]
            data_shape = _node_output(data_name, out_shape, arg_shape)
            total += int(np.prod(data_shape)) * int(np.prod(weight[1:]))
        else:
            output = out_shape[node['name'] + '_output']
            total += int(np.prod(output)) * int(np.prod(weight[1:]))
    return total


def _node_output(node, out_shape, arg_shape):
    if node['op'] == 'null':
        return arg_shape[node['name']]
    return out_shape[node['name'] + '_output']
