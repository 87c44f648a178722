"""Helpers for tests against GluonCV's published layouts and golden outputs (tests/data)."""
import json
import os
import zlib

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
PARAMS_DIR = os.path.join(DATA, 'gluoncv-params')
GOLDEN_DIR = os.path.join(DATA, 'golden')


def spec_index():
    with open(os.path.join(PARAMS_DIR, 'INDEX.json')) as f:
        return json.load(f)


def spec_layout(name):
    """{array name: shape} of GluonCV's published file ``name``."""
    with open(os.path.join(PARAMS_DIR, name + '.json')) as f:
        return {k: tuple(v) for k, v in json.load(f)['params'].items()}


def golden(name):
    return dict(np.load(os.path.join(GOLDEN_DIR, name + '.npz')))


def golden_fill(key, shape):
    """The deterministic value of array ``key`` used to make the golden outputs
    (tests/data/golden/README.md)."""
    rng = np.random.RandomState(zlib.crc32(key.encode('utf-8')))
    if key.endswith('running_var'):
        value = rng.uniform(0.5, 1.5, size=shape)
    elif key.endswith('gamma'):
        value = rng.uniform(0.1, 0.4, size=shape)
    elif key.endswith(('running_mean', 'beta', 'bias')):
        value = rng.normal(0.0, 0.1, size=shape)
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        std = np.sqrt(2.0 / fan_in) * (8 if key.endswith('predictor.weight') else 1)
        value = rng.normal(0.0, std, size=shape)
    return value.astype(np.float32)


def fill_golden_weights(net):
    """Set every parameter of ``net`` (keyed as save_parameters() names them) by golden_fill."""
    for key, param in net._collect_params_with_prefix().items():
        param.set_data(golden_fill(key, param.shape))


def golden_shapes_models(methods=('fcn', 'psp', 'deeplab')):
    """``{method: <method>_resnet18_shapes}`` with golden-rule weights, hybridized: small
    models whose logits are far from zero, for export and optimization tests."""
    import gluonseg
    models = {}
    for method in methods:
        net = gluonseg.get_model('%s_resnet18_shapes' % method, pretrained_base=False)
        fill_golden_weights(net)
        net.hybridize()
        models[method] = net
    return models
