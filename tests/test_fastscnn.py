"""Fast-SCNN: GluonCV's golden logits (main and auxiliary), any input size, the outputs by
mode, training through the engine, and the optimized form against float32 (ONNX export:
test_onnx_export.py)."""
import json
import os
import re
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluonseg
from gluonseg.cli import main as cli_main
from gluonseg.engine.trainer import set_head_lr_mult
from gluonseg.model_zoo.fastscnn import FastSCNN
from gluonseg.model_zoo.multiscale import MultiScaleEvaluator
from gluonseg.model_zoo.optimize import OptimizedSegmentation
from gluonseg.model_zoo.segbase import resize_like, set_reproducible_gradients
from model_checks import (argmax_agreement, model_in_both_modes, relative_error,
                          training_gradients)
from model_checks import scenes  # noqa: F401  (fixture)
from spec_utils import fill_golden_weights, golden

# Sizes whose 1/32 features do not divide the pyramid's bins, and sizes that are no multiple
# of 8 (the first convolution has no padding, so the 1/8 features are not exactly 1/8).
SIZES = [(97, 131), (64, 64), (33, 50), (3, 3)]


# Trains Fast-SCNN from scratch on Shapes to a validation mIoU of 0.81 in 2-4 minutes
# on 2 CPU cores (96x96 scenes: at 64x64 its 1/8 features are too coarse for the corners that
# tell the shapes apart; everything at one learning rate, higher than the FCN preset's).
SHAPES_COMMAND = ['train', '--model', 'fastscnn_shapes', '--aux', '--base-size', '96',
                  '--crop-size', '96', '--epochs', '4', '--lr', '0.2']


@pytest.fixture(scope='module')
def golden_net():
    """fastscnn_citys with the golden-rule weights, hybridized."""
    net = gluonseg.get_model('fastscnn_citys', pretrained_base=False)
    fill_golden_weights(net)
    net.hybridize()
    return net


@pytest.mark.parametrize('hybridize', [False, True])
def test_golden_outputs_match_gluoncv(hybridize):
    data = golden('fastscnn_citys')
    net = gluonseg.get_model('fastscnn_citys', pretrained_base=False)
    fill_golden_weights(net)
    if hybridize:
        net.hybridize()
    x = mx.nd.array(data['input'])
    assert relative_error(net(x).asnumpy(), data['out0']) < 1e-4
    # The inference graph leaves the auxiliary head out; run it on its own.
    aux = resize_like(mx.nd, net.auxlayer(net.learning_to_downsample(x)), x)
    assert relative_error(aux.asnumpy(), data['out1']) < 1e-4


def test_pretrained_base_is_accepted_and_fetches_nothing(tmp_path):
    # get_model's default pretrained_base=True: there is no backbone to download.
    net = gluonseg.get_model('fastscnn_shapes', root=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    assert isinstance(net, FastSCNN) and net.nclass == 4 and net.aux
    # Nothing comes pretrained: the trainer's head multiplier leaves every rate alone.
    assert net.head_blocks() == [] and set_head_lr_mult(net, 10.0) == []


shapes_net = model_in_both_modes('fastscnn_shapes')


def test_any_input_size_gives_output_of_that_size(shapes_net):
    net = shapes_net
    for h, w in SIZES:
        assert net(mx.nd.random.normal(shape=(2, 3, h, w))).shape == (2, 4, h, w)
    # Nothing changed inside: the first size again gives the same result as a fresh call.
    x = mx.nd.random.normal(shape=(1, 3, 97, 131))
    first = net(x).asnumpy()
    net(mx.nd.random.normal(shape=(1, 3, 40, 72)))
    np.testing.assert_allclose(net(x).asnumpy(), first, rtol=1e-5, atol=1e-5)


def test_one_graph_per_mode_and_the_aux_head_only_while_training(tmp_path):
    mx.random.seed(0)
    net = gluonseg.get_model('fastscnn_shapes', pretrained_base=False)
    net.hybridize(static_alloc=True)
    x = mx.nd.random.normal(shape=(2, 3, 40, 56))
    aux_params = set(net.auxlayer.collect_params().keys())
    for _ in range(2):  # training, inference, and both again
        with autograd.record():
            out, aux = net(x)
            loss = out.sum() + aux.sum()
        loss.backward()
        assert out.shape == aux.shape == (2, 4, 40, 56)
        assert np.abs(net.auxlayer.block[4].weight.grad().asnumpy()).max() > 0
        with warnings.catch_warnings():
            warnings.simplefilter('error', UserWarning)  # no "parameter not used" warning
            inferred = net(x)
        assert isinstance(inferred, mx.nd.NDArray) and inferred.shape == (2, 4, 40, 56)
        inputs = {n['name'] for n in json.loads(net._cached_graph[1].tojson())['nodes']
                  if n['op'] == 'null'}
        assert inputs and not inputs & aux_params
    assert net.predict(x).shape == (2, 40, 56) and net.predict(x).dtype == np.int32
    net.export(str(tmp_path / 'net'))
    nodes = json.loads((tmp_path / 'net-symbol.json').read_text())['nodes']
    assert not {n['name'] for n in nodes} & aux_params


def test_reproducible_gradients_are_the_imperative_ones_in_a_static_graph():
    """The trainer's setting (set_reproducible_gradients) reaches the three resizing blocks,
    and a hybridize(static_alloc=True) graph then computes the gradients of the network
    run imperatively."""
    x = mx.nd.random.normal(shape=(2, 3, 48, 72))

    def gradients(hybridize):
        net = gluonseg.get_model('fastscnn_shapes', pretrained_base=False)
        fill_golden_weights(net)
        assert set_reproducible_gradients(net) == 3  # the network, the pyramid, the fusion
        if hybridize:
            net.hybridize(static_alloc=True)
        return training_gradients(  # the same dropout masks both ways
            net, lambda outputs: (outputs[0] ** 2).mean() + 0.4 * (outputs[1] ** 2).mean(), x,
            seed=1)

    expected, actual = gradients(False), gradients(True)
    for name, grad in expected.items():
        scale = np.abs(grad).max() + 1e-3
        assert np.abs(actual[name] - grad).max() / scale < 1e-3, name


def test_gluonseg_train_and_the_multiscale_evaluator_take_it(tmp_path, capsys):
    save_dir = str(tmp_path / 'run')
    assert cli_main(['train', '--model', 'fastscnn_shapes', '--aux', '--train-length', '16',
                     '--val-length', '8', '--base-size', '40', '--crop-size', '40',
                     '--epochs', '1', '--batch-size', '4', '--no-progress', '--quiet',
                     '--save-dir', save_dir]) == 0
    final = json.loads(re.search(r'^FINAL (.*)$', capsys.readouterr().out, re.M).group(1))
    assert 0 <= final['mIoU'] <= 1 and final['iteration'] == 4
    net = gluonseg.get_model('fastscnn_shapes', pretrained_base=False)
    evaluator = MultiScaleEvaluator(net, base_size=48, crop_size=40, scales=(0.75, 1.25))
    assert evaluator.predict(mx.nd.random.normal(shape=(1, 3, 37, 45))).shape == (1, 37, 45)


@pytest.mark.parametrize('dtype', ['float32', 'int8'])
def test_optimized_logits_stay_close_to_float32(golden_net, scenes, dtype):
    x, calib = scenes
    expected = golden_net(x).asnumpy()
    model = gluonseg.optimize(golden_net, dtype, calib_data=[calib])
    assert isinstance(model, OptimizedSegmentation)
    out = model(x).asnumpy()
    agreement = argmax_agreement(out, expected)
    nodes = json.loads(model._cached_graph[1].tojson())['nodes']
    convs = [n for n in nodes if n['op'] == '_sg_mkldnn_conv']
    assert len(convs) == 45  # every convolution fused with its BatchNorm (and ReLU)
    quantized = [n for n in convs if n.get('attrs', {}).get('quantized') == 'true']
    # The bounds of tests/test_optimize.py.
    if dtype == 'float32':
        assert relative_error(out, expected) < 1e-5 and agreement == 1.0
        assert not quantized
    else:
        assert 1e-4 < relative_error(out, expected) < 0.2 and agreement >= 0.95
        assert len(quantized) == len(convs) - 1  # all but the classifier



@pytest.mark.slow  # 2-4 minutes on 2 CPU cores
def test_shapes_command_trains_from_scratch_to_075_miou(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    run = subprocess.run([sys.executable, '-m', 'gluonseg.cli'] + SHAPES_COMMAND +
                         ['--no-progress'], cwd=str(tmp_path), env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    print(run.stdout)  # the measured mIoU and wall time, shown with pytest -s
    final = json.loads(re.search(r'^FINAL (.*)$', run.stdout, re.M).group(1))
    assert final['mIoU'] >= 0.75, run.stdout
