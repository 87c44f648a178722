"""gluonseg.utils.mxnet_compat against the installed MXNet: each test fails when MXNet changes
the private behaviour that one compat function relies on."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluonseg.utils import mxnet_compat as compat


class TwoLayers(gluon.nn.Block):
    def __init__(self):
        super().__init__()
        self.body = gluon.nn.Dense(3, in_units=2)
        self.head = gluon.nn.Dense(1)  # in_units inferred: deferred initialization

    def forward(self, x):
        return self.head(self.body(x))


def test_structural_params_are_named_by_their_place_in_the_block():
    first, second = TwoLayers(), TwoLayers()
    names = list(compat.structural_params(first))
    assert names == ['body.weight', 'body.bias', 'head.weight', 'head.bias']
    assert list(compat.structural_params(second)) == names  # the same in another build
    assert compat.structural_params(first)['body.weight'] is first.body.weight


def test_structural_params_are_the_keys_of_save_parameters(tmp_path):
    net = TwoLayers()
    net.initialize()
    net(mx.nd.ones((1, 2)))
    path = str(tmp_path / 'net.params')
    net.save_parameters(path)
    assert set(mx.nd.load(path)) == set(compat.structural_params(net))


@pytest.mark.parametrize('state', ['uninitialized', 'deferred', 'initialized'])
def test_load_into_parameter_sets_values_in_any_state_and_keeps_the_dtype(state):
    param = gluon.Parameter('w', shape=(2, 3) if state != 'deferred' else (0, 3),
                            dtype='float32', allow_deferred_init=True)
    ctx = [mx.cpu(0), mx.cpu(1)]
    if state != 'uninitialized':
        param.initialize(ctx=ctx)
    value = mx.nd.arange(6, dtype='float64').reshape((2, 3))
    compat.load_into_parameter(param, value, ctx)
    assert [d.context for d in param.list_data()] == [mx.cpu(0), mx.cpu(1)]
    for data in param.list_data():
        assert data.dtype == np.float32  # the parameter's dtype, not the array's
        np.testing.assert_array_equal(data.asnumpy(), value.asnumpy())


def test_has_data_and_is_deferred_follow_the_initialization():
    param = gluon.Parameter('w', shape=(0, 3), allow_deferred_init=True)
    assert not compat.has_data(param) and not compat.is_deferred(param)
    param.initialize()
    assert not compat.has_data(param) and compat.is_deferred(param)  # shape unknown yet
    full = gluon.Parameter('v', shape=(2, 3))
    full.initialize()
    assert compat.has_data(full) and not compat.is_deferred(full)
    net = TwoLayers()
    net.initialize()
    assert compat.is_deferred(net.head.weight)
    net(mx.nd.ones((1, 2)))  # the first forward completes the deferred initialization
    assert compat.has_data(net.head.weight) and not compat.is_deferred(net.head.weight)


def test_layer_kwargs_are_the_operator_arguments():
    conv = gluon.nn.Conv2D(8, kernel_size=3, strides=2, padding=1)
    kwargs = compat.layer_kwargs(conv)
    assert (kwargs['kernel'], kwargs['stride'], kwargs['pad']) == ((3, 3), (2, 2), (1, 1))
    pool = compat.layer_kwargs(gluon.nn.AvgPool2D(3, 2, 1))
    assert (pool['kernel'], pool['stride'], pool['pad']) == ((3, 3), (2, 2), (1, 1))
    assert compat.layer_kwargs(gluon.nn.AvgPool2D(3, 2, 1)) == pool
    assert compat.layer_kwargs(gluon.nn.AvgPool2D(3, 2, 0)) != pool


def test_trainer_params_and_optimizer_states_follow_the_given_order():
    a, b = gluon.Parameter('a', shape=(2,)), gluon.Parameter('b', shape=(3,))
    for p in (a, b):
        p.initialize(init=mx.init.One())
    trainer = gluon.Trainer([b, a], 'sgd', {'learning_rate': 0.1, 'momentum': 0.9},
                            update_on_kvstore=False)
    assert compat.trainer_params(trainer) == [b, a]
    assert compat.optimizer_states(trainer) == {}  # before the first update
    with autograd.record():
        loss = (a.data() * 2).sum() + (b.data() * 3).sum()
    loss.backward()
    trainer.step(1)
    states = compat.optimizer_states(trainer)
    assert sorted(states) == [0, 1]
    # momentum = -lr * grad after one step, at the index of the trainer's order
    np.testing.assert_allclose(states[0].asnumpy(), [-0.3] * 3, rtol=1e-6)
    np.testing.assert_allclose(states[1].asnumpy(), [-0.2] * 2, rtol=1e-6)


def test_init_kvstore_now_pushes_the_weights_before_the_first_step():
    param = gluon.Parameter('w', shape=(2,))
    param.initialize(init=mx.init.Constant(3.0), ctx=[mx.cpu(0), mx.cpu(1)])
    trainer = gluon.Trainer([param], 'sgd', {'learning_rate': 0.1}, kvstore='local',
                            update_on_kvstore=False)
    assert trainer._kvstore is None  # lazily made by the first step()
    compat.init_kvstore_now(trainer)
    assert trainer._kvstore is not None and trainer._kvstore.type == 'local'
    pulled = mx.nd.zeros((2,))
    trainer._kvstore.pull(0, out=pulled)
    np.testing.assert_array_equal(pulled.asnumpy(), [3.0, 3.0])
    compat.init_kvstore_now(trainer)  # a second call changes nothing


def test_amp_loss_scaler_and_its_state_round_trip(monkeypatch):
    from mxnet.contrib.amp import amp
    from mxnet.contrib.amp.loss_scaler import LossScaler
    param = gluon.Parameter('w', shape=(1,))
    param.initialize()
    trainer = gluon.Trainer([param], 'sgd')
    # init_trainer only checks that amp.init ran (which would patch MXNet for the process);
    # its first call hands out amp.init's scaler, the next ones new ones
    monkeypatch.setattr(amp, '_amp_initialized', True)
    monkeypatch.setattr(amp, '_amp_loss_scale_initialized', True)
    amp.init_trainer(trainer)
    scaler = compat.amp_loss_scaler(trainer)
    assert isinstance(scaler, LossScaler)
    state = compat.loss_scaler_state(scaler)
    assert state == {'loss_scale': 2.0 ** 16, 'next_loss_scale': 2.0 ** 16, 'unskipped': 0}
    assert scaler.loss_scale == state['loss_scale']
    # an overflow: the pending scale halves, the current one changes at the next check
    grad = gluon.Parameter('g', shape=(2,))
    grad.initialize()
    grad.grad()[:] = float('inf')
    assert scaler.has_overflow([grad])
    state = compat.loss_scaler_state(scaler)
    assert state == {'loss_scale': 2.0 ** 16, 'next_loss_scale': 2.0 ** 15, 'unskipped': 0}
    grad.grad()[:] = 1.0
    assert not scaler.has_overflow([grad])
    assert compat.loss_scaler_state(scaler) == {'loss_scale': 2.0 ** 15,
                                                'next_loss_scale': 2.0 ** 15, 'unskipped': 1}
    other = LossScaler()
    compat.set_loss_scaler_state(other, {'loss_scale': 8.0, 'next_loss_scale': 4.0,
                                         'unskipped': 5})
    assert other.loss_scale == 8.0
    assert compat.loss_scaler_state(other) == {'loss_scale': 8.0, 'next_loss_scale': 4.0,
                                               'unskipped': 5}


def test_amp_initialized_reads_amps_own_flag(monkeypatch):
    from mxnet.contrib.amp import amp
    monkeypatch.setattr(amp, '_amp_initialized', True)
    assert compat.amp_initialized() is True
    monkeypatch.setattr(amp, '_amp_initialized', False)
    assert compat.amp_initialized() is False


def test_host_view_reads_and_writes_the_arrays_memory():
    array = mx.nd.arange(6, dtype='float32').reshape((2, 3))
    array.wait_to_read()
    view = compat.host_view(array)
    assert view.shape == (2, 3) and view.dtype == np.float32
    np.testing.assert_array_equal(view, array.asnumpy())
    view[1, 2] = -7.0  # written through to the NDArray
    assert array[1, 2].asscalar() == -7.0
    with pytest.raises(ValueError, match='float32 CPU NDArray'):
        compat.host_view(mx.nd.zeros((2,), dtype='float64'))


def test_children_hybridize_state_and_flags():
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(3), mx.gluon.nn.Dense(2))
    assert [type(c).__name__ for c in compat.child_blocks(net).values()] == ['Dense', 'Dense']
    assert not compat.is_hybridized(net)
    net.hybridize(static_alloc=True)
    assert compat.is_hybridized(net) and compat.hybridize_flags(net)['static_alloc'] is True


class _Hooked(mx.gluon.nn.HybridBlock):
    """Records the hooks MXNet calls; SegBaseModel overrides them to keep a graph per mode."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def hybrid_forward(self, F, x):
        return x * 2 if mx.autograd.is_training() else x + 1

    def _get_graph(self, *args):
        self.calls.append('trace')
        return super()._get_graph(*args)

    def _build_cache(self, *args):
        self.calls.append('build')
        return super()._build_cache(*args)

    def _clear_cached_op(self):
        self.calls.append('clear')
        return super()._clear_cached_op()


def test_cached_graphs_can_be_taken_and_put_back():
    block = _Hooked()
    block.hybridize()
    assert block.calls[-1] == 'clear' and compat.cached_graph(block) == ()
    x = mx.nd.array([3, 3])
    assert block(x).asnumpy().tolist() == [4, 4]           # x + 1, traced in predict mode
    assert 'trace' in block.calls and 'build' in block.calls
    inputs, output = compat.cached_graph(block)
    assert [s.name for s in inputs] == ['data'] and 'plus' in output.tojson()
    inference = compat.take_cached_graph(block)
    assert compat.cached_graph(block) == ()
    with mx.autograd.train_mode():
        assert block(x).asnumpy().tolist() == [6, 6]       # x * 2: a new trace
    training = compat.take_cached_graph(block)
    compat.put_cached_graph(block, inference)
    with mx.autograd.train_mode():                          # the graph given back runs
        assert block(x).asnumpy().tolist() == [4, 4]
    compat.put_cached_graph(block, training)
    assert block(x).asnumpy().tolist() == [6, 6]
    assert compat.take_cached_graph(_Hooked()) is None
