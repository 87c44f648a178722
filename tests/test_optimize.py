"""gluonseg.optimize: fused float32, bfloat16 and int8 CPU inference against float32.

The small ResNet-18 Shapes models get the deterministic golden weights (BatchNorm statistics
and scales like a trained network's, unlike a fresh initialization) and see Shapes scenes, so
the reduced-precision errors are those of a realistic network on structured images.
"""
import json

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.model_zoo.multiscale import MultiScaleEvaluator
from gluonseg.model_zoo.optimize import OptimizedSegmentation, optimize
from model_checks import (MAX_RELATIVE_ERROR, MIN_ARGMAX_AGREEMENT, argmax_agreement,
                          narrow_wideresnet, relative_error)
from model_checks import scenes  # noqa: F401  (fixture)
from spec_utils import fill_golden_weights, golden_shapes_models

METHODS = ['fcn', 'psp', 'deeplab']
DTYPES = ['float32', 'bfloat16', 'int8']  # the bounds: model_checks.MAX_RELATIVE_ERROR


@pytest.fixture(scope='module')
def nets():
    return golden_shapes_models(METHODS)


def models(methods=METHODS, dtypes=DTYPES):
    """Parameters for the ``optimized`` fixture: every (method, dtype) of the two lists."""
    return pytest.mark.parametrize('optimized', [(m, d) for d in dtypes for m in methods],
                                   indirect=True, ids='-'.join)


@pytest.fixture(scope='module')
def optimized(request, nets, scenes):
    """``(method, dtype, optimized model)`` for a (method, dtype) given by :func:`models`
    (int8: naive calibration). Module-scoped and parametrized, so pytest runs every test of
    one model together and drops the model before building the next: one optimized model is
    alive at a time, not all nine."""
    method, dtype = request.param
    _, calib = scenes
    return method, dtype, optimize(nets[method], dtype=dtype, calib_data=[calib])


def graph_nodes(model):
    return json.loads(model._cached_graph[1].tojson(remove_amp_cast=False))['nodes']


@models()
def test_optimized_logits_stay_close_to_float32(nets, scenes, optimized):
    x, _ = scenes
    method, dtype, model = optimized
    expected = nets[method](x).asnumpy()
    assert isinstance(model, OptimizedSegmentation)
    out = model(x)
    assert out.dtype == np.float32 and out.shape == expected.shape
    out = out.asnumpy()
    error = relative_error(out, expected)
    agreement = argmax_agreement(out, expected)
    assert error < MAX_RELATIVE_ERROR[dtype], \
        '%s %s: relative error %.3g of the logits' % (method, dtype, error)
    assert agreement >= MIN_ARGMAX_AGREEMENT[dtype], \
        '%s %s: only %.4f of the pixels keep their class' % (method, dtype, agreement)
    if dtype != 'float32':
        # The reduced precision is really used: its error is far above float32 round-off.
        assert error > 1e-4, '%s %s: no reduced precision visible' % (method, dtype)


@models(dtypes=['float32'])
def test_float32_path_fuses_conv_bn_relu(optimized):
    ops = [n['op'] for n in graph_nodes(optimized[2])]
    assert ops.count('_sg_mkldnn_conv') > 10
    assert 'BatchNorm' not in ops and 'Convolution' not in ops, \
        'unfused operators left: %s' % sorted(set(ops))


@models(dtypes=['bfloat16'])
def test_bfloat16_converts_every_convolution_but_the_classifier(optimized):
    model = optimized[2]
    float_convs = [name for name, op in model.float_layers if 'conv' in op.lower()]
    assert len(float_convs) == 1, 'convolutions left in float32: %s' % float_convs
    # The convolutions' weights are stored in bfloat16 (cast_optional_params).
    dtypes = {str(p.dtype) for p in model.collect_params().values()}
    assert any('bfloat16' in d for d in dtypes), dtypes
    float_ops = {op for _, op in model.float_layers}
    # BlockGrad: an identity at inference (the resizes' size-only input)
    assert float_ops <= {'_sg_mkldnn_conv', '_contrib_BilinearResize2D', 'BlockGrad',
                         '_contrib_AdaptiveAvgPooling2D', 'broadcast_like', 'Dropout'}, float_ops


@models(dtypes=['int8'])
def test_int8_quantizes_every_convolution_but_the_classifier(nets, optimized):
    method, _, model = optimized
    nodes = graph_nodes(model)
    convs = [n for n in nodes if n['op'] == '_sg_mkldnn_conv']
    quantized = [n for n in convs if n.get('attrs', {}).get('quantized') == 'true']
    assert len(quantized) == len(convs) - 1 > 10
    float_ops = sorted({op for _, op in model.float_layers})
    expected = {'fcn': ['_contrib_BilinearResize2D', '_sg_mkldnn_conv'],
                'psp': ['_contrib_AdaptiveAvgPooling2D', '_contrib_BilinearResize2D',
                        '_sg_mkldnn_conv'],
                'deeplab': ['_contrib_BilinearResize2D', '_sg_mkldnn_conv', 'broadcast_like']}
    # BlockGrad: an identity at inference, on the resizes' size-only (float) input
    assert float_ops == sorted(expected[method] + ['BlockGrad'])
    # The layer kept in float32 is the head's final 1x1 convolution (head.block.4).
    assert model.classifier.replace('_fwd', '_weight') == nets[method].head.block[4].weight.name


@pytest.mark.parametrize('dtype', ['bfloat16', 'int8'])
def test_float_classifier_false_converts_the_classifier_too(nets, scenes, dtype):
    x, calib = scenes
    model = optimize(nets['deeplab'], dtype=dtype, calib_data=[calib], float_classifier=False)
    float_convs = [name for name, op in model.float_layers if 'conv' in op.lower()]
    assert float_convs == [], 'convolutions left in float32: %s' % float_convs
    if dtype == 'int8':
        convs = [n for n in graph_nodes(model) if n['op'] == '_sg_mkldnn_conv']
        assert all(n.get('attrs', {}).get('quantized') == 'true' for n in convs)
    out, expected = model(x).asnumpy(), nets['deeplab'](x).asnumpy()
    assert out.dtype == np.float32
    assert relative_error(out, expected) < MAX_RELATIVE_ERROR[dtype]
    assert argmax_agreement(out, expected) >= MIN_ARGMAX_AGREEMENT[dtype]


@models(methods=['psp'])
def test_any_input_size_after_optimization(nets, optimized):
    _, dtype, model = optimized
    x = mx.nd.array(np.random.RandomState(3).uniform(-1.5, 1.5, (2, 3, 37, 51)))
    out = model(x)
    assert out.shape == (2, 4, 37, 51)
    assert relative_error(out.asnumpy(), nets['psp'](x).asnumpy()) \
        < MAX_RELATIVE_ERROR[dtype]


@models()
def test_export_and_import_give_the_same_outputs(scenes, optimized, tmp_path):
    x, _ = scenes
    _, dtype, model = optimized
    expected = model(x).asnumpy()
    prefix = str(tmp_path / dtype)
    model.export(prefix)
    loaded = mx.gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'],
                                          prefix + '-0000.params')
    np.testing.assert_allclose(loaded(x).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    with open(prefix + '-symbol.json') as f:
        ops = {n['op'] for n in json.load(f)['nodes']}
    if dtype == 'bfloat16':
        # MXNet's default export drops AMP's casts, which would give a float32 graph.
        assert 'amp_cast' in ops
        saved = mx.nd.load(prefix + '-0000.params')
        assert any('bfloat16' in str(v.dtype) for v in saved.values())
    if dtype == 'int8':
        assert '_contrib_quantize_v2' in ops


@models(dtypes=['bfloat16', 'int8'])
def test_multiscale_evaluator_runs_an_optimized_model(nets, scenes, optimized):
    x, _ = scenes
    method, dtype, model = optimized
    kwargs = dict(base_size=64, crop_size=64, scales=(0.75, 1.0), flip=True)
    expected = MultiScaleEvaluator(nets[method], **kwargs).predict(x[:2]).asnumpy()
    labels = MultiScaleEvaluator(model, **kwargs).predict(x[:2])
    assert labels.shape == (2, 96, 96)
    agreement = float((labels.asnumpy() == expected).mean())
    assert agreement >= MIN_ARGMAX_AGREEMENT[dtype], agreement


def test_entropy_calibration_and_excluded_layers(nets, scenes):
    x, calib = scenes
    net = nets['fcn']
    first_conv = [n['name'] for n in json.loads(net(mx.sym.var('data')).tojson())['nodes']
                  if n['op'] == 'Convolution'][0]
    # A DataLoader-style iterable of (data, label) batches; only the first 2 are used.
    batches = [(calib[:2], None), (calib[2:], None), (None, None)]
    model = optimize(net, dtype='int8', calib_data=batches, calib_mode='entropy',
                     num_calib_batches=2, exclude_layers=[first_conv])
    convs = [n for n in graph_nodes(model) if n['op'] == '_sg_mkldnn_conv']
    float_convs = [n for n in convs if n.get('attrs', {}).get('quantized') != 'true']
    assert len(float_convs) == 2, 'expected the first conv and the classifier in float32'
    expected = net(x).asnumpy()
    out = model(x).asnumpy()
    assert relative_error(out, expected) < MAX_RELATIVE_ERROR['int8']
    assert argmax_agreement(out, expected) >= MIN_ARGMAX_AGREEMENT['int8']


def test_int8_without_calibration_computes_thresholds_at_run_time(nets, scenes):
    x, _ = scenes
    model = optimize(nets['fcn'], dtype='int8', calib_mode='none')
    expected = nets['fcn'](x).asnumpy()
    assert argmax_agreement(model(x).asnumpy(), expected) >= MIN_ARGMAX_AGREEMENT['int8']


def test_bad_arguments_are_named(nets):
    with pytest.raises(ValueError, match="dtype must be one of"):
        optimize(nets['fcn'], dtype='float16')
    with pytest.raises(ValueError, match="calib_mode must be one of"):
        optimize(nets['fcn'], dtype='int8', calib_mode='percentile')
    with pytest.raises(ValueError, match="needs calib_data"):
        optimize(nets['fcn'], dtype='int8')
    with pytest.raises(ValueError, match=r"must be \(N, 3, H, W\)"):
        optimize(nets['fcn'], dtype='int8', calib_data=[mx.nd.zeros((3, 32, 32))])
    with pytest.raises(ValueError, match='needs the CPU'):
        optimize(nets['fcn'], dtype='bfloat16', ctx=mx.gpu(0))
    uninitialized = mx.gluon.nn.Conv2D(4, 1, in_channels=3)
    with pytest.raises(ValueError, match='has no value yet'):
        optimize(uninitialized)



# The other families in bfloat16 (their own test files check float32 and int8), in the slow
# suite: the default run's memory is at its 4 GB limit.
OTHER_FAMILIES = ['danet_resnet18_shapes', 'icnet_resnet18_shapes', 'fastscnn_shapes',
                  'deeplab_resnest50_voc', 'deeplab_v3b_plus_wideresnet_voc']


@pytest.mark.slow
@pytest.mark.parametrize('name', OTHER_FAMILIES)
def test_other_families_in_bfloat16_stay_close_to_float32(name, scenes):
    with narrow_wideresnet():  # only the WideResNet-38 model is narrowed
        net = gluonseg.get_model(name, pretrained_base=False, nclass=4)
    fill_golden_weights(net)
    net.hybridize()
    x, _ = scenes
    expected = net(x).asnumpy()
    out = optimize(net, dtype='bfloat16')(x).asnumpy()
    error = relative_error(out, expected)
    assert 1e-4 < error < MAX_RELATIVE_ERROR['bfloat16'], '%s: relative error %.3g' % (name, error)
    assert argmax_agreement(out, expected) >= MIN_ARGMAX_AGREEMENT['bfloat16']
