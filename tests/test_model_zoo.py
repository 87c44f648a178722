"""Semantic models: published layouts, golden outputs, any input size, export, contexts."""
import json
import os
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluonseg
from gluonseg.model_zoo.registry import model_info
from gluonseg.model_zoo.segbase import resize_like, set_reproducible_gradients
from model_checks import assert_same_gradients, training_gradients
from spec_utils import fill_golden_weights, golden, spec_index, spec_layout

SPEC_MODELS = [n for n in spec_index() if not n.startswith('mask_rcnn')]
GOLDEN_SEMANTIC = ['fcn_resnet50_ade', 'fcn_resnet101_voc', 'psp_resnet101_voc',
                   'deeplab_resnet101_voc', 'deeplab_resnet152_coco']


def saved_layout(net):
    return {k: tuple(p.shape) for k, p in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize('name', SPEC_MODELS)
def test_layout_equals_published_file(name):
    # The built network's shapes, without initializing its weights.
    net = model_info(name).builder(pretrained_base=False, root=None)
    assert saved_layout(net) == spec_layout(name)


@pytest.mark.parametrize('name', sorted(spec_index()))
def test_published_sha1_is_registered(name):
    published = spec_index()[name]['published_sha1']
    shas = [w.sha1 for w in model_info(name).weights]
    assert shas == ([published] if published else [])


def _golden_net(name):
    net = gluonseg.get_model(name, pretrained_base=False)
    fill_golden_weights(net)
    return net


def _assert_close(actual, expected):
    rel = np.abs(actual - expected).max() / np.abs(expected).max()
    assert rel < 1e-4, 'relative error %g' % rel


@pytest.mark.parametrize('name', GOLDEN_SEMANTIC)
def test_golden_outputs_match_gluoncv(name):
    data = golden(name)
    net = _golden_net(name)
    net.hybridize()
    x = mx.nd.array(data['input'])
    _assert_close(net(x).asnumpy(), data['out'])
    # The inference graph leaves the auxiliary head out; run it on its own.
    aux = resize_like(mx.nd, net.auxlayer(net.base_forward(x)[0]), x)
    _assert_close(aux.asnumpy(), data['aux'])


def test_golden_output_without_hybridize():
    data = golden('psp_resnet101_voc')
    net = _golden_net('psp_resnet101_voc')
    _assert_close(net(mx.nd.array(data['input'])).asnumpy(), data['out'])


@pytest.fixture(scope='module')
def small_nets():
    """FCN, PSPNet and DeepLabV3 on ResNet-18 with random weights (fast)."""
    nets = {}
    for cls in ('fcn', 'psp', 'deeplab'):
        mx.random.seed(0)
        nets[cls] = gluonseg.get_model('%s_resnet50_voc' % cls, pretrained_base=False,
                                       backbone='resnet18', nclass=5)
    return nets


@pytest.mark.parametrize('method', ['fcn', 'psp', 'deeplab'])
@pytest.mark.parametrize('hybridize', [False, True])
def test_any_input_size_gives_output_of_that_size(small_nets, method, hybridize):
    net = small_nets[method]
    if hybridize:
        net.hybridize()
    for h, w in [(97, 131), (64, 64), (33, 50)]:
        out = net(mx.nd.random.normal(shape=(2, 3, h, w)))
        assert out.shape == (2, 5, h, w)
    # Nothing changed inside: the first size again gives the same result as a fresh call.
    x = mx.nd.random.normal(shape=(1, 3, 97, 131))
    first = net(x).asnumpy()
    net(mx.nd.random.normal(shape=(1, 3, 40, 72)))
    np.testing.assert_allclose(net(x).asnumpy(), first, rtol=1e-5, atol=1e-5)


def test_training_returns_main_and_aux_outputs(small_nets):
    net = small_nets['deeplab']
    x = mx.nd.random.normal(shape=(2, 3, 48, 40))
    with autograd.record():
        out, aux = net(x)
    assert out.shape == aux.shape == (2, 5, 48, 40)
    assert net.predict(x).shape == (2, 48, 40)
    assert net.predict(x).dtype == np.int32


def _without_aux_head(net):
    """The same network built with ``aux=False``, holding ``net``'s current weights."""
    plain = type(net)(net.nclass, backbone=net.backbone_name, aux=False, pretrained_base=False)
    plain.initialize()
    values = net._collect_params_with_prefix()
    for name, param in plain._collect_params_with_prefix().items():
        param.set_data(values[name].data())
    return plain


def _graph_ops(symbol_json):
    nodes = json.loads(symbol_json)['nodes']
    return sorted(n['op'] for n in nodes), {n['name'] for n in nodes if n['op'] == 'null'}


@pytest.mark.parametrize('method', ['fcn', 'psp', 'deeplab'])
def test_hybridized_aux_model_leaves_the_aux_head_out_of_its_inference_graph(method, tmp_path):
    mx.random.seed(0)
    net = gluonseg.get_model('%s_resnet18_shapes' % method, pretrained_base=False)
    x = mx.nd.random.normal(shape=(2, 3, 40, 48))
    net.hybridize(static_alloc=True)
    # Training first, then inference, then both again: each mode gets its own graph.
    for _ in range(2):
        with autograd.record():
            out, aux = net(x)
            loss = out.sum() + 0.4 * aux.sum()
        loss.backward()
        assert np.abs(net.auxlayer.block[4].weight.grad().asnumpy()).max() > 0
        plain = _without_aux_head(net)  # after the step: BatchNorm statistics moved
        plain.hybridize()
        expected = plain(x).asnumpy()
        with warnings.catch_warnings():
            warnings.simplefilter('error', UserWarning)  # no "parameter not used" warning
            inferred = net(x)
        assert isinstance(inferred, mx.nd.NDArray)
        np.testing.assert_array_equal(inferred.asnumpy(), expected)
        # The graph that ran is the network's without the auxiliary head.
        plain_ops, _ = _graph_ops(plain._cached_graph[1].tojson())
        ops, inputs = _graph_ops(net._cached_graph[1].tojson())
        assert ops == plain_ops
        assert not inputs & set(net.auxlayer.collect_params().keys())
    net.export(str(tmp_path / 'net'))
    ops, inputs = _graph_ops((tmp_path / 'net-symbol.json').read_text())
    assert ops == plain_ops
    assert not inputs & set(net.auxlayer.collect_params().keys())
    assert set(net.head.collect_params().keys()) <= inputs


def _training_gradients(net, x, label):
    return training_gradients(  # the same dropout mask every time
        net, lambda outputs: (outputs[0] * label).sum() + 0.4 * (outputs[1] * label).sum(), x,
        seed=1)


@pytest.mark.parametrize('reproducible', [True, False])
@pytest.mark.parametrize('method', ['fcn', 'psp', 'deeplab'])
def test_hybridized_training_gradients_equal_the_imperative_ones(method, reproducible):
    # BilinearResize2D's backward writes zeros over the gradient of its ``like`` input; in a
    # static_alloc graph that erased what PSPNet's pyramid input had accumulated from its
    # other uses (wrong backbone gradients). Every resize blocks it, also outside gluonseg's
    # trainer (reproducible gradients off: a user's own loop).
    mx.random.seed(0)
    net = gluonseg.get_model('%s_resnet18_shapes' % method, pretrained_base=False, nclass=3)
    assert set_reproducible_gradients(net, reproducible) == (2 if method == 'psp' else 1)
    x = mx.nd.random.normal(shape=(2, 3, 40, 48))
    label = mx.nd.random.normal(shape=(2, 3, 40, 48))
    imperative = _training_gradients(net, x, label)
    net.hybridize(static_alloc=True)
    hybridized = _training_gradients(net, x, label)
    assert_same_gradients(hybridized, imperative)


@pytest.mark.parametrize('source, target', [((7, 9), (33, 40)), ((1, 1), (8, 8)),
                                            ((6, 6), (6, 6)), ((9, 5), (4, 11))])
def test_reproducible_resize_keeps_the_output_and_repeats_its_gradient(source, target):
    x = mx.nd.random.normal(shape=(2, 3) + source)
    like = mx.nd.zeros((2, 1) + target)
    head = mx.nd.random.normal(shape=(2, 3) + target)
    results = []
    for reproducible in (False, True, True, True):
        x.attach_grad()
        with autograd.record():
            out = resize_like(mx.nd, x, like, reproducible)
        out.backward(head)
        results.append((out.asnumpy(), x.grad.asnumpy()))
    (plain_out, plain_grad), (out, grad) = results[:2]
    assert np.array_equal(out, plain_out)  # the same bits as BilinearResize2D
    np.testing.assert_allclose(grad, plain_grad, rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(g, grad) for _, g in results[2:])


@pytest.mark.parametrize('method', ['fcn', 'psp', 'deeplab'])
def test_export_and_symbolblock_import_give_identical_outputs(small_nets, method, tmp_path):
    net = small_nets[method]
    net.hybridize()
    x = mx.nd.random.normal(shape=(1, 3, 72, 56))
    expected = net(x).asnumpy()
    prefix = str(tmp_path / method)
    net.export(prefix)
    imported = mx.gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'],
                                            prefix + '-0000.params')
    np.testing.assert_allclose(imported(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    # Another size through the exported graph still works.
    assert imported(mx.nd.zeros((2, 3, 40, 88))).shape == (2, 5, 40, 88)
    # The network still returns both outputs when training after the export.
    with autograd.record():
        assert len(net(x)) == 2


def test_forward_on_two_contexts_gives_the_same_result(small_nets):
    ctxs = [mx.cpu(0), mx.cpu(1)]
    net = small_nets['fcn']
    net.collect_params().reset_ctx(ctxs)
    x = mx.nd.random.normal(shape=(1, 3, 40, 40))
    outs = [net(x.as_in_context(c)) for c in ctxs]
    assert [o.context for o in outs] == ctxs
    np.testing.assert_allclose(outs[0].asnumpy(), outs[1].asnumpy(), rtol=1e-6)
    net.collect_params().reset_ctx(mx.cpu())


def test_get_model_places_parameters_on_every_context():
    net = gluonseg.get_model('fcn_resnet50_voc', pretrained_base=False, backbone='resnet18',
                             ctx=[mx.cpu(0), mx.cpu(1)])
    for param in net.collect_params().values():
        assert param.list_ctx() == [mx.cpu(0), mx.cpu(1)], param.name


def test_predict_takes_paths_pil_images_and_arrays(small_nets, tmp_path):
    from PIL import Image
    net = small_nets['fcn']
    array = (np.random.RandomState(0).rand(45, 61, 3) * 255).astype(np.uint8)
    path = str(tmp_path / 'image.png')
    Image.fromarray(array).save(path)
    from_array = net.predict(array)
    assert from_array.shape == (45, 61) and from_array.dtype == np.int32
    np.testing.assert_array_equal(net.predict(path), from_array)
    listed = net.predict([Image.fromarray(array), array[:20]])
    np.testing.assert_array_equal(listed[0], from_array)
    assert listed[1].shape == (20, 61)


SYNC_BN_STEP = """
import threading
import mxnet as mx, numpy as np, gluonseg
from mxnet import autograd
from mxnet.gluon.contrib.nn import SyncBatchNorm
ctxs = [mx.cpu(0), mx.cpu(1)]
net = gluonseg.get_model('deeplab_resnet18_shapes', pretrained_base=False, ctx=ctxs,
                         norm_layer=SyncBatchNorm, norm_kwargs={'num_devices': 2})
assert isinstance(net.bn1, SyncBatchNorm)
assert isinstance(net.head.aspp.project[1], SyncBatchNorm)
def step(x):
    with autograd.record():
        loss = sum(o.mean() for o in net(x))
    loss.backward()
# SyncBatchNorm waits for every device inside forward: one thread per device.
threads = [threading.Thread(target=step, args=(mx.nd.random.normal(shape=(2, 3, 32, 32), ctx=c),))
           for c in ctxs]
[t.start() for t in threads]
[t.join() for t in threads]
grads = [g.asnumpy() for g in net.head.block[4].weight.list_grad()]
assert all(np.isfinite(g).all() and abs(g).sum() > 0 for g in grads)
mx.nd.waitall()  # exiting with SyncBatchNorm work still queued hangs MXNet's engine
print('ok')
"""


def test_sync_batchnorm_on_two_cpu_contexts_trains_a_step():
    # A subprocess: MXNet reads MXNET_CPU_WORKER_NTHREADS at import, and SyncBatchNorm on CPU
    # contexts deadlocks with the default single CPU worker thread.
    env = dict(os.environ, MXNET_CPU_WORKER_NTHREADS='2')
    result = subprocess.run([sys.executable, '-c', SYNC_BN_STEP], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-2000:]
