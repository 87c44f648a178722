"""ONNX export of FCN, PSPNet and DeepLabV3, checked against MXNet with onnxruntime.

onnxruntime's Python 3.11 wheels declare numpy>=1.24.2, which MXNet 1.9.1 cannot import, so
pip cannot install it with gluonseg's extras; it runs correctly beside numpy 1.23.5 when
installed with `pip install --no-deps onnxruntime==1.15.1`.
"""
import mxnet as mx
import numpy as np
import pytest

import gluonseg
from spec_utils import fill_golden_weights, golden, golden_shapes_models

onnx = pytest.importorskip(
    'onnx', reason='onnx is not installed: pip install -e ".[onnx]" (onnx==1.14.1)')
ort = pytest.importorskip(
    'onnxruntime', reason='onnxruntime is not installed: pip install --no-deps '
                          'onnxruntime==1.15.1 (its wheels declare numpy>=1.24.2, which '
                          'MXNet 1.9.1 cannot import; it runs beside numpy 1.23.5)')

from gluonseg.model_zoo.onnx_export import onnx_converters, export_onnx  # noqa: E402

METHODS = ['fcn', 'psp', 'deeplab']
# Sizes whose stride-8 features do not divide PSPNet's bins (5x7 features for 6 bins).
SIZES = [(1, 3, 64, 64), (2, 3, 97, 131), (1, 3, 33, 50)]


@pytest.fixture(scope='module')
def nets():
    return golden_shapes_models(METHODS)


@pytest.fixture(scope='module')
def exported(nets, tmp_path_factory):
    folder = tmp_path_factory.mktemp('onnx')
    return {method: export_onnx(nets[method], str(folder / ('%s.onnx' % method)),
                                input_shape=(1, 3, 64, 64))
            for method in METHODS}


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # dynamic shapes make the memory planner chatty
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('method', METHODS)
def test_onnxruntime_matches_mxnet_at_any_batch_and_size(nets, exported, method):
    runner = session(exported[method])
    rng = np.random.RandomState(0)
    for shape in SIZES:
        x = rng.uniform(-2, 2, shape).astype(np.float32)
        expected = nets[method](mx.nd.array(x)).asnumpy()
        (out,) = runner.run(['logits'], {'data': x})
        assert out.shape == expected.shape == (shape[0], 4) + shape[2:]
        error = np.abs(out - expected).max() / np.abs(expected).max()
        assert error < 1e-5, '%s at %s: relative error %.3g' % (method, shape, error)


@pytest.mark.parametrize('method', METHODS)
def test_graph_declares_dynamic_batch_and_size_and_constant_weights(exported, method):
    model = onnx.load(exported[method])
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain == ''] == [13]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    assert [i.name for i in model.graph.input] == ['data']
    assert dims(model.graph.input[0]) == ['batch', 3, 'height', 'width']
    assert dims(model.graph.output[0]) == ['batch', 4, 'height', 'width']
    op_types = {node.op_type for node in model.graph.node}
    assert 'Resize' in op_types
    if method == 'psp':
        assert 'MatMul' in op_types  # the adaptive pooling with bins 2, 3 and 6


@pytest.mark.slow  # about 35 s: three ResNet-101 graphs exported
@pytest.mark.parametrize('name', ['fcn_resnet101_voc', 'psp_resnet101_voc',
                                  'deeplab_resnet101_voc'])
def test_published_architectures_give_gluoncvs_golden_logits(name, tmp_path):
    """The layouts of GluonCV's published VOC files (ResNet-101, 21 classes) with the
    golden-rule weights: onnxruntime gives GluonCV's golden logits, and MXNet's at another
    batch and size."""
    net = gluonseg.get_model(name, pretrained_base=False)
    fill_golden_weights(net)
    net.hybridize()
    data = golden(name)
    runner = session(export_onnx(net, str(tmp_path / (name + '.onnx')),
                                 input_shape=data['input'].shape))
    (out,) = runner.run(['logits'], {'data': data['input'].astype(np.float32)})
    error = np.abs(out - data['out']).max() / np.abs(data['out']).max()
    assert error < 1e-4, '%s: relative error %.3g to the golden logits' % (name, error)
    x = np.random.RandomState(2).uniform(-2, 2, (2, 3, 41, 70)).astype(np.float32)
    (out,) = runner.run(['logits'], {'data': x})
    expected = net(mx.nd.array(x)).asnumpy()
    error = np.abs(out - expected).max() / np.abs(expected).max()
    assert out.shape == (2, 21, 41, 70) and error < 1e-5, (name, out.shape, error)


def test_static_export_fixes_the_shape(nets, tmp_path):
    path = export_onnx(nets['fcn'], str(tmp_path / 'fcn.onnx'), input_shape=(2, 3, 48, 40),
                       dynamic=False)
    model = onnx.load(path)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shape == [2, 3, 48, 40]
    x = np.random.RandomState(1).uniform(-2, 2, (2, 3, 48, 40)).astype(np.float32)
    (out,) = session(path).run(None, {'data': x})
    np.testing.assert_allclose(out, nets['fcn'](mx.nd.array(x)).asnumpy(), rtol=1e-4,
                               atol=1e-4)


def test_mxnet_exporter_alone_fails_and_its_registry_is_restored(nets, tmp_path):
    """MXNet 1.9.1 cannot export resize-like nor adaptive pooling with bins > 1; the
    converters are registered only while export_onnx runs."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    before = {v: dict(table) for v, table in MXNetGraph.registry_.items()}
    export_onnx(nets['psp'], str(tmp_path / 'psp.onnx'), input_shape=(1, 3, 64, 64))
    assert {v: dict(table) for v, table in MXNetGraph.registry_.items()} == before
    symbol = nets['psp'](mx.sym.var('data'))
    params = {name: p.data() for name, p in nets['psp'].collect_params().items()
              if name in symbol.list_inputs()}
    # It checks height/width before the mode: "height, width or scale_height, scale_width
    # cannot be 0"; with those set it would refuse any mode but 'size'.
    with pytest.raises((AttributeError, NotImplementedError), match='cannot be 0|other than'):
        mx.onnx.export_model(symbol, params, in_shapes=[(1, 3, 64, 64)],
                             onnx_file_path=str(tmp_path / 'plain.onnx'))
    # With gluonseg's converters MXNet's own entry point works too.
    with onnx_converters(onnx.defs.onnx_opset_version()):
        mx.onnx.export_model(symbol, params, in_shapes=[(1, 3, 64, 64)],
                             onnx_file_path=str(tmp_path / 'plain.onnx'))
    assert onnx.load(str(tmp_path / 'plain.onnx')).graph.node


def test_optimized_models_and_bad_shapes_are_refused(nets, tmp_path):
    fused = gluonseg.optimize(nets['fcn'])
    with pytest.raises(ValueError, match='oneDNN-only operators'):
        export_onnx(fused, str(tmp_path / 'fused.onnx'))
    with pytest.raises(ValueError, match=r'input_shape must be \(N, 3, H, W\)'):
        export_onnx(nets['fcn'], str(tmp_path / 'x.onnx'), input_shape=(1, 64, 64))
