"""The numba resize of the optimized segmentation path gives BilinearResize2D's values, and an
optimized model that uses it gives the outputs of its whole graph."""
import json

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.model_zoo.optimize import fast_resize, optimize
from spec_utils import fill_golden_weights

needs_numba = pytest.mark.skipif(not fast_resize.available(),
                                 reason='numba is not installed (pip install gluonseg[fast])')


def contrib_resize(x, height, width):
    return mx.nd.contrib.BilinearResize2D(x, height=height, width=width,
                                          align_corners=True).asnumpy()


@needs_numba
@pytest.mark.parametrize('shape,size', [
    ((1, 3, 1, 5), (4, 7)),         # one input row
    ((2, 4, 5, 1), (9, 3)),         # batch 2, one input column
    ((1, 2, 1, 1), (3, 3)),         # one input pixel
    ((1, 2, 7, 9), (1, 1)),         # one output pixel
    ((1, 2, 7, 9), (1, 4)),         # one output row
    ((2, 3, 13, 17), (97, 131)),    # odd sizes, upsampling
    ((1, 2, 64, 48), (17, 9)),      # downsampling
    ((1, 2, 9, 12), (40, 5)),       # up along one axis, down along the other
    ((1, 1, 6, 6), (6, 6)),         # same size: a copy
    ((1, 19, 32, 64), (256, 512)),  # Fast-SCNN's 8x, many row blocks per channel
])
def test_values_are_bilinear_resize2ds(shape, size):
    x = mx.nd.array(np.random.RandomState(sum(shape)).randn(*shape).astype('f'))
    expected = contrib_resize(x, *size)
    out = fast_resize.bilinear_resize(x, *size)
    assert isinstance(out, mx.nd.NDArray) and out.context == x.context
    assert out.shape == expected.shape and out.dtype == np.float32
    # The same positions, weights and sums in float32 (bit-identical on the machines tested);
    # the bound leaves room for an MXNet build that fuses the multiply-adds.
    assert np.abs(out.asnumpy() - expected).max() <= 1e-6


@needs_numba
def test_the_split_between_threads_changes_nothing(monkeypatch):
    x = mx.nd.array(np.random.RandomState(5).randn(2, 3, 20, 30).astype('f'))
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    one = fast_resize.bilinear_resize(x, 130, 70).asnumpy()
    monkeypatch.setenv('OMP_NUM_THREADS', '7')
    np.testing.assert_array_equal(fast_resize.bilinear_resize(x, 130, 70).asnumpy(), one)


def test_a_bad_size_is_named():
    with pytest.raises(ValueError, match='output size must be positive'):
        fast_resize.bilinear_resize(mx.nd.zeros((1, 1, 4, 4)), 0, 3)


def test_without_numba_or_float32_it_is_bilinear_resize2d(monkeypatch):
    x = mx.nd.array(np.random.RandomState(2).randn(1, 2, 5, 7))
    wide = x.astype('float64')
    np.testing.assert_array_equal(fast_resize.bilinear_resize(wide, 11, 3).asnumpy(),
                                  contrib_resize(wide, 11, 3))
    expected = contrib_resize(x, 11, 3)
    monkeypatch.setattr(fast_resize, 'numba', None)
    np.testing.assert_array_equal(fast_resize.bilinear_resize(x, 11, 3).asnumpy(), expected)


def resize_graph(data, **kwargs):
    """data -> 1x1 conv -> BilinearResize2D(**kwargs); its parameters initialized."""
    conv = mx.sym.Convolution(data, kernel=(1, 1), num_filter=2, name='conv')
    out = mx.sym.contrib.BilinearResize2D(conv, **kwargs)
    params = mx.gluon.ParameterDict()
    for name, shape in [('conv_weight', (2, 3, 1, 1)), ('conv_bias', (2,))]:
        params.get(name, shape=shape).initialize()
    return out, params


@needs_numba
def test_only_a_corner_aligned_resize_to_the_input_is_split():
    data = mx.sym.var('data')
    other = mx.sym.var('other')
    for kwargs, split in [
            (dict(like=mx.sym.BlockGrad(data), mode='like', align_corners=True), True),
            (dict(like=data, mode='like', align_corners=True), True),
            (dict(like=data, mode='like', align_corners=False), False),
            (dict(like=other, mode='like', align_corners=True), False),
            (dict(height=8, width=8, align_corners=True), False)]:
        out, params = resize_graph(data, **kwargs)
        assert (fast_resize.FinalResize.split(out, 'data', params) is not None) == split, \
            kwargs
    out, params = resize_graph(data, like=data, mode='like', align_corners=True)
    assert fast_resize.FinalResize.split(out.get_children()[0], 'data', params) is None
    x = mx.nd.array(np.random.RandomState(4).randn(2, 3, 5, 6).astype('f'))
    final = fast_resize.FinalResize.split(out, 'data', params)
    expected = out.eval(ctx=mx.cpu(), data=x, conv_weight=params['conv_weight'].data(),
                        conv_bias=params['conv_bias'].data())[0]
    np.testing.assert_array_equal(final(x).asnumpy(), expected.asnumpy())


@pytest.fixture(scope='module')
def small_nets():
    nets = {}
    for name in ('fcn_resnet18_shapes', 'fastscnn_shapes'):
        net = gluonseg.get_model(name, pretrained_base=False)
        fill_golden_weights(net)
        net.hybridize()
        nets[name] = net
    return nets


@needs_numba
@pytest.mark.parametrize('dtype', ['float32', 'int8'])
@pytest.mark.parametrize('name', ['fcn_resnet18_shapes', 'fastscnn_shapes'])
def test_optimized_outputs_are_those_of_the_whole_graph(small_nets, name, dtype, monkeypatch,
                                                        tmp_path):
    rng = np.random.RandomState(0)
    calib = mx.nd.array(rng.uniform(-1.5, 1.5, (2, 3, 64, 64)))
    model = optimize(small_nets[name], dtype=dtype, calib_data=[calib])
    calls = []
    kernel = fast_resize.bilinear_resize
    monkeypatch.setattr(fast_resize, 'bilinear_resize',
                        lambda *args: calls.append(args[1:]) or kernel(*args))
    x = mx.nd.array(rng.uniform(-1.5, 1.5, (2, 3, 97, 131)))
    out = model(x).asnumpy()
    assert calls == [(97, 131)]  # the kernel did the resize
    assert out.shape == (2, 4, 97, 131) and out.dtype == np.float32
    final_resize, model._final_resize = model._final_resize, None
    whole = model(x).asnumpy()
    model._final_resize = final_resize
    assert np.abs(out - whole).max() <= 1e-6 * np.abs(whole).max()
    # export writes the whole graph, resize included, even when only the split one ran
    prefix = str(tmp_path / 'model')
    model.export(prefix)
    with open(prefix + '-symbol.json') as f:
        graph = json.load(f)
    assert graph['nodes'][graph['heads'][0][0]]['op'] == '_contrib_BilinearResize2D'
    loaded = mx.gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'],
                                          prefix + '-0000.params')
    np.testing.assert_allclose(loaded(x).asnumpy(), out, rtol=1e-5, atol=1e-5)


def test_without_numba_the_optimized_model_runs_its_graph(small_nets, monkeypatch):
    monkeypatch.setattr(fast_resize, 'numba', None)
    model = optimize(small_nets['fastscnn_shapes'])
    assert model._final_resize is None
    x = mx.nd.array(np.random.RandomState(1).uniform(-1.5, 1.5, (1, 3, 50, 70)))
    np.testing.assert_allclose(model(x).asnumpy(),
                               small_nets['fastscnn_shapes'](x).asnumpy(), rtol=1e-4,
                               atol=1e-4)
