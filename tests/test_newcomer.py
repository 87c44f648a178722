"""What a newcomer meets in the first hour: ``net.initialize()`` after ``get_model`` says once,
not once per parameter, that the weights were kept (gluonseg/model_zoo/segbase.py and
rcnn/mask_rcnn.py)."""
import warnings

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.model_zoo import model_info
from gluonseg.model_zoo.rcnn.mask_rcnn import mask_rcnn


def recorded_warnings(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')  # MXNet's repeats would otherwise be folded
        call()
    return caught


def values(net):
    return {name: param.data().asnumpy().copy()
            for name, param in net.collect_params().items()}


def test_initialize_after_get_model_warns_once_and_keeps_the_weights():
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False, aux=False)
    before = values(net)
    caught = recorded_warnings(net.initialize)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert '%d of %d parameters of FCN were already initialized' % (len(before), len(before)) \
        in message and 'force_reinit=True' in message
    assert caught[0].filename == __file__  # points at the caller's line
    for name, value in values(net).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # force_reinit still re-initializes every parameter, silently.
    caught = recorded_warnings(lambda: net.initialize(mx.init.Constant(0.25), force_reinit=True))
    assert caught == []
    weight = net.head.block[0].weight.data().asnumpy()
    assert (weight == 0.25).all() and not np.array_equal(weight,
                                                         before[net.head.block[0].weight.name])


def test_initialize_fills_only_what_is_missing():
    # A network built without get_model: its head initialized by hand, the rest not.
    net = model_info('fcn_resnet18_shapes').builder(pretrained_base=False, aux=False)
    net.head.initialize(mx.init.Constant(0.5))
    head = [param.name for param in net.head.collect_params().values()]
    caught = recorded_warnings(lambda: net.initialize(mx.init.Constant(0.125)))
    assert len(caught) == 1
    assert '%d of %d parameters' % (len(head), len(list(net.collect_params().keys()))) in \
        str(caught[0].message)
    filled = values(net)
    assert (filled[net.head.block[0].weight.name] == 0.5).all()  # kept
    assert (filled[net.conv1.weight.name] == 0.125).all()  # initialized now
    # A network with nothing initialized yet says nothing.
    fresh = model_info('fcn_resnet18_shapes').builder(pretrained_base=False, aux=False)
    assert recorded_warnings(fresh.initialize) == []


def test_mask_rcnn_initialize_twice_warns_once():
    net = mask_rcnn(depth=18, variant='v1b', fpn=True, classes=['circle', 'square'],
                    fpn_channels=16, rpn_channels=16, box_units=32, mask_channels=16)
    assert recorded_warnings(lambda: net.initialize(mx.init.Xavier())) == []
    count = len(list(net.collect_params().keys()))
    with pytest.warns(UserWarning) as caught:
        net.initialize()
    assert len(caught) == 1
    assert '%d of %d parameters of MaskRCNN' % (count, count) in str(caught[0].message)
    conv = net.collect_params('.*conv.*weight').values()
    param = next(iter(conv))
    assert recorded_warnings(
        lambda: net.initialize(mx.init.Constant(0.25), force_reinit=True)) == []
    assert (param.data().asnumpy() == 0.25).all()
