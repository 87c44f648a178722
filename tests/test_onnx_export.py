"""ONNX export of the semantic models, checked against MXNet with onnxruntime: one registered
name per family exports and matches, and every registered semantic and instance name belongs
to a family checked here or in test_onnx_mask_rcnn.py, or is listed as not exportable.

onnxruntime: see model_checks.import_onnx (`pip install --no-deps onnxruntime==1.15.1`).
"""
import ast
import os
import re

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.model_zoo.weights_table import MODELS
from model_checks import import_onnx, narrow_wideresnet, onnx_session, relative_error
from spec_utils import fill_golden_weights, golden, golden_shapes_models

onnx, _ = import_onnx()

from gluonseg.model_zoo.onnx_export import onnx_converters, export_onnx  # noqa: E402

# One registered name per family (builder and backbone kind, see family()), exported with
# the golden-rule weights. DeepLabV3+ gets a narrow WideResNet-38 (model_checks.NARROW_STAGES):
# its 137M values need more than 3 GB of memory to export.
EXPORT_CASES = ['fcn_resnet18_shapes', 'psp_resnet18_shapes', 'deeplab_resnet18_shapes',
                'danet_resnet18_shapes', 'icnet_resnet18_shapes', 'deeplab_resnest50_ade',
                'fastscnn_citys', 'deeplab_v3b_plus_wideresnet_citys']
NARROW = {'deeplab_v3b_plus_wideresnet_citys'}
# A batch of 2 and odd sizes; 97x131 and 33x50 give stride-8 features that do not divide
# PSPNet's bins (13x17, 5x7 for 6 bins).
SIZES = [(1, 3, 64, 64), (2, 3, 97, 131), (1, 3, 33, 50)]
# Families whose registered names cannot be exported: family() -> the reason.
NOT_EXPORTABLE = {}
# Mask R-CNN (C4 and FPN) is exported by gluonseg.model_zoo.onnx_detection and checked by
# this test over the names of that file's GOLDEN list.
MASK_RCNN_TEST = ('test_onnx_mask_rcnn.py',
                  'test_onnxruntime_gives_the_detections_of_the_golden_weights', 'GOLDEN')


def family(name):
    """What makes a registered name another export case: its builder and its backbone's
    kind ('resnet', 'resnest', 'wideresnet', None) or, for Mask R-CNN, whether it has an FPN."""
    record = MODELS[name]
    if record['task'] == 'instance':
        return record['builder'], record['kwargs']['fpn']
    backbone = record['kwargs'].get('backbone')
    return record['builder'], backbone and re.match('[a-z]+', backbone).group()


@pytest.fixture(scope='module', params=EXPORT_CASES)
def case(request, tmp_path_factory):
    """``(name, network, path of its export)``: a case of EXPORT_CASES with golden-rule
    weights, hybridized, exported with dynamic batch and size. pytest runs the tests of one
    case together and drops it before the next (memory)."""
    name = request.param
    if name in NARROW:
        with narrow_wideresnet():
            net = gluonseg.get_model(name, pretrained_base=False)
    else:
        net = gluonseg.get_model(name, pretrained_base=False)
    fill_golden_weights(net)
    net.hybridize()
    path = export_onnx(net, str(tmp_path_factory.mktemp('onnx') / (name + '.onnx')),
                       input_shape=(1, 3, 64, 64))
    return name, net, path


@pytest.fixture(scope='module')
def nets():
    return golden_shapes_models(['fcn', 'psp'])


def test_onnxruntime_matches_mxnet_at_any_batch_and_size(case):
    name, net, path = case
    runner = onnx_session(path)
    rng = np.random.RandomState(0)
    for shape in SIZES:
        x = rng.uniform(-2, 2, shape).astype(np.float32)
        expected = net(mx.nd.array(x)).asnumpy()
        (out,) = runner.run(['logits'], {'data': x})
        assert out.shape == expected.shape == (shape[0], net.nclass) + shape[2:]
        error = relative_error(out, expected)
        assert error < 1e-5, '%s at %s: relative error %.3g' % (name, shape, error)


def test_graph_declares_dynamic_batch_and_size_and_constant_weights(case):
    name, net, path = case
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain == ''] == [13]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    assert [i.name for i in model.graph.input] == ['data']
    assert dims(model.graph.input[0]) == ['batch', 3, 'height', 'width']
    assert dims(model.graph.output[0]) == ['batch', net.nclass, 'height', 'width']
    # Every constant is read by a node (onnxruntime warns about each one that is not).
    read = {value for node in model.graph.node for value in node.input}
    assert [t.name for t in model.graph.initializer if t.name not in read] == []
    op_types = {node.op_type for node in model.graph.node}
    assert 'Resize' in op_types
    if name.startswith('psp_'):
        assert 'MatMul' in op_types  # the adaptive pooling with bins 2, 3 and 6


def mask_rcnn_families():
    """The families of the names test_onnx_mask_rcnn.py's export test runs over, read from
    its source (importing it would collect its tests twice)."""
    path, test_name, list_name = MASK_RCNN_TEST
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), path)) as f:
        tree = ast.parse(f.read())
    tests = [node for node in tree.body
             if isinstance(node, ast.FunctionDef) and node.name == test_name]
    assert tests, '%s has no test %s: update MASK_RCNN_TEST' % (path, test_name)
    assert any(list_name in ast.unparse(d) for d in tests[0].decorator_list), \
        '%s in %s is no longer parametrized over %s' % (test_name, path, list_name)
    names = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             and [getattr(t, 'id', None) for t in node.targets] == [list_name]]
    assert names, '%s has no list %s' % (path, list_name)
    return {family(name) for name in names[0]}


def test_every_semantic_and_instance_name_is_exported_or_says_why_not():
    exported = {family(name) for name in EXPORT_CASES}
    mask_rcnn = mask_rcnn_families()
    assert mask_rcnn and all(key[0].endswith(':mask_rcnn') for key in mask_rcnn), mask_rcnn
    assert all(reason.strip() for reason in NOT_EXPORTABLE.values()), NOT_EXPORTABLE
    assert not exported & set(NOT_EXPORTABLE), 'exported and listed as not exportable'
    names = [name for name, record in MODELS.items()
             if record['task'] in ('semantic', 'instance')]
    families = {family(name) for name in names}
    assert set(NOT_EXPORTABLE) <= families, 'NOT_EXPORTABLE lists families no name has'
    covered = exported | mask_rcnn | set(NOT_EXPORTABLE)
    uncovered = ['%s %s' % (name, family(name)) for name in names
                 if family(name) not in covered]
    assert not uncovered, (
        'registered names of families that no ONNX test exports; add one name of each to '
        'EXPORT_CASES, or its family to NOT_EXPORTABLE with the reason:\n' +
        '\n'.join(uncovered))


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
    runner = onnx_session(export_onnx(net, str(tmp_path / (name + '.onnx')),
                                      input_shape=data['input'].shape))
    (out,) = runner.run(['logits'], {'data': data['input'].astype(np.float32)})
    error = relative_error(out, data['out'])
    assert error < 1e-4, '%s: relative error %.3g to the golden logits' % (name, error)
    x = np.random.RandomState(2).uniform(-2, 2, (2, 3, 41, 70)).astype(np.float32)
    (out,) = runner.run(['logits'], {'data': x})
    expected = net(mx.nd.array(x)).asnumpy()
    error = relative_error(out, expected)
    assert out.shape == (2, 21, 41, 70) and error < 1e-5, (name, out.shape, error)


def test_static_export_fixes_the_shape(nets, tmp_path):
    fcn = nets['fcn']
    path = export_onnx(fcn, str(tmp_path / 'fcn.onnx'), input_shape=(2, 3, 48, 40),
                       dynamic=False)
    model = onnx.load(path)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shape == [2, 3, 48, 40]
    x = np.random.RandomState(1).uniform(-2, 2, (2, 3, 48, 40)).astype(np.float32)
    (out,) = onnx_session(path).run(None, {'data': x})
    np.testing.assert_allclose(out, fcn(mx.nd.array(x)).asnumpy(), rtol=1e-4, atol=1e-4)


def test_mxnet_exporter_alone_fails_and_its_registry_is_restored(nets, tmp_path):
    """MXNet 1.9.1 cannot export resize-like nor adaptive pooling with bins > 1; the
    converters are registered only while export_onnx runs."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    psp = nets['psp']
    before = {v: dict(table) for v, table in MXNetGraph.registry_.items()}
    export_onnx(psp, str(tmp_path / 'psp.onnx'), input_shape=(1, 3, 64, 64))
    assert {v: dict(table) for v, table in MXNetGraph.registry_.items()} == before
    symbol = psp(mx.sym.var('data'))
    params = {name: p.data() for name, p in psp.collect_params().items()
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
    fcn = nets['fcn']
    with pytest.raises(ValueError, match='oneDNN-only operators'):
        export_onnx(gluonseg.optimize(fcn), str(tmp_path / 'fused.onnx'))
    with pytest.raises(ValueError, match=r'input_shape must be \(N, 3, H, W\)'):
        export_onnx(fcn, str(tmp_path / 'x.onnx'), input_shape=(1, 64, 64))
