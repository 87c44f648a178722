"""Training engine: LR schedule, loss weighting, checkpoints, exact resume, data parallelism,
NaN handling; and (slow) the default train.py / test.py commands."""
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import zipfile

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon import nn

import gluonseg
from gluonseg.data import SegmentationValTransform, ShapesSegmentation
from gluonseg.engine import (CheckpointError, NonFiniteLossError, SegmentationLoss,
                             SegmentationLRScheduler, evaluate_segmentation, initialize_from,
                             load_checkpoint, save_checkpoint)
from gluonseg.engine import checkpoint as checkpoint_module
from fixtures_training import TinySegNet, assert_same_weights, tiny_net, tiny_trainer, weights_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha1(path):
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


# ----------------------------------------------------------------------------- LR schedule
def test_lr_schedule_warmup_poly_end_and_midpoint():
    sched = SegmentationLRScheduler(0.01, total_iters=110, warmup_iters=10, mode='poly')
    assert sched(0) == 0.0                                  # warmup starts at 0
    assert sched(5) == pytest.approx(0.005)                 # halfway through the warmup
    assert sched(10) == pytest.approx(0.01)                 # warmup reaches the base rate
    # t = 60: T = 50 of N = 100 poly iterations -> 0.01 * 0.5 ** 0.9
    assert sched(60) == pytest.approx(0.01 * 0.5 ** 0.9) and sched(60) == pytest.approx(0.0053589, abs=1e-7)
    assert sched(109) == pytest.approx(0.01 * 0.01 ** 0.9)  # last update
    assert sched(110) == 0.0 and sched(500) == 0.0           # poly ends at 0 and stays there


def test_lr_schedule_cosine_step_and_state():
    cosine = SegmentationLRScheduler(0.1, 100, mode='cosine', final_lr=0.001)
    assert cosine(0) == pytest.approx(0.1) and cosine(100) == pytest.approx(0.001)
    assert cosine(50) == pytest.approx(0.0505)
    step = SegmentationLRScheduler.from_epochs(0.1, 10, 10, step_epochs=(3, 6), mode='step')
    assert [step(t) for t in (29, 30, 59, 60)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    step(42)
    state = step.state_dict()
    json.dumps(state)  # goes into the checkpoint's JSON
    restored = SegmentationLRScheduler.from_epochs(0.1, 10, 10, step_epochs=(3, 6), mode='step')
    assert restored.load_state_dict(state).last_iter == 42
    with pytest.raises(ValueError, match='total_iters: checkpoint 100, now 200'):
        SegmentationLRScheduler.from_epochs(0.1, 20, 10, mode='step').load_state_dict(state)
    with pytest.raises(ValueError, match='warmup'):
        SegmentationLRScheduler(0.1, 10, warmup_iters=10)


# ----------------------------------------------------------------------------- loss
def test_loss_is_mean_over_labelled_pixels():
    logits = mx.nd.random.normal(shape=(2, 3, 4, 5))
    label = mx.nd.array(np.random.RandomState(0).randint(0, 3, size=(2, 4, 5)))
    label[0, 0, :] = 255
    loss = SegmentationLoss(ignore_label=255)(logits, label)
    logp = logits.log_softmax(axis=1).asnumpy()
    lab = label.asnumpy().astype(int)
    picked = [-logp[n, lab[n, i, j], i, j] for n in range(2) for i in range(4) for j in range(5)
              if lab[n, i, j] != 255]
    assert loss.asscalar() == pytest.approx(np.mean(picked), rel=1e-5)
    logits.attach_grad()
    with autograd.record():
        out = SegmentationLoss()(logits, label)
    out.backward()
    assert not logits.grad[0, :, 0, :].asnumpy().any()  # ignored pixels get no gradient


def test_aux_weight_scales_the_aux_gradient_only():
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False, aux=True)
    x = mx.nd.random.normal(shape=(2, 3, 32, 32))
    y = mx.nd.array(np.random.RandomState(0).randint(0, 4, size=(2, 32, 32)))

    def grads(aux_weight):
        loss_fn = SegmentationLoss(aux_weight=aux_weight)
        mx.random.seed(7)  # same dropout masks in both runs
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        main = net.head.block[4].weight.grad().asnumpy().copy()
        aux = net.auxlayer.block[4].weight.grad().asnumpy().copy()
        return main, aux

    main_half, aux_half = grads(0.5)
    main_one, aux_one = grads(1.0)
    np.testing.assert_allclose(main_one, main_half, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(aux_one, 2 * aux_half, rtol=1e-4, atol=1e-8)
    assert np.abs(aux_half).max() > 0


def test_output_weights_weight_each_of_several_outputs():
    rng = np.random.RandomState(1)
    outputs = [mx.nd.array(rng.normal(size=(1, 3, 4, 4))) for _ in range(3)]
    label = mx.nd.array(rng.randint(0, 3, size=(1, 4, 4)))
    single = [SegmentationLoss()(out, label).asscalar() for out in outputs]
    weighted = SegmentationLoss(output_weights=(1.0, 0.4, 0.2))(outputs, label).asscalar()
    assert weighted == pytest.approx(single[0] + 0.4 * single[1] + 0.2 * single[2], rel=1e-5)
    with pytest.raises(ValueError, match='returned 3 outputs but the loss has 2'):
        SegmentationLoss(output_weights=(1.0, 1.0))(outputs, label)
    with pytest.raises(ValueError, match='declares training_output_weights'):
        SegmentationLoss()(outputs, label)
    with pytest.raises(ValueError, match='non-negative'):
        SegmentationLoss(output_weights=(1.0, -1.0))


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    net = tiny_net()
    path = str(tmp_path / 'latest.ckpt')
    save_checkpoint(path, net, meta={'iteration': 1})
    before = sha1(path)

    real_write = zipfile.ZipFile.write

    def failing_write(self, filename, arcname=None, *args, **kwargs):
        real_write(self, filename, arcname, *args, **kwargs)
        raise OSError('disk full (simulated) after writing %s' % arcname)

    monkeypatch.setattr(zipfile.ZipFile, 'write', failing_write)
    net.trunk[0].weight.set_data(net.trunk[0].weight.data() + 1)
    with pytest.raises(OSError, match='simulated'):
        save_checkpoint(path, net, meta={'iteration': 2})
    assert sha1(path) == before                                 # the old checkpoint is intact
    assert os.listdir(tmp_path) == ['latest.ckpt']              # and no partial file is left
    assert load_checkpoint(path)['iteration'] == 1

    # An interruption that kills the process is simulated by stopping before the rename.
    monkeypatch.setattr(zipfile.ZipFile, 'write', real_write)
    monkeypatch.setattr(checkpoint_module.os, 'replace',
                        lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, net, meta={'iteration': 3})
    assert sha1(path) == before and os.listdir(tmp_path) == ['latest.ckpt']


def test_damaged_or_foreign_checkpoint_errors_name_the_problem(tmp_path):
    path = str(tmp_path / 'x.ckpt')
    save_checkpoint(path, tiny_net(), meta={'iteration': 1})
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='is a damaged gluonseg checkpoint .*copy the '
                                              'file again'):
        load_checkpoint(path)
    params = str(tmp_path / 'x.params')
    tiny_net().save_parameters(params)
    with pytest.raises(CheckpointError, match='not a gluonseg checkpoint .it is an MXNet '
                                              '.params weight file'):
        load_checkpoint(params)
    with pytest.raises(CheckpointError, match='No checkpoint at'):
        load_checkpoint(str(tmp_path / 'missing.ckpt'))


def test_initialize_from_drops_class_layers_when_counts_differ(tmp_path):
    source = tiny_net(nclass=4)
    path = str(tmp_path / 'four.params')
    source.save_parameters(path)
    target = tiny_net(seed=1, nclass=3, aux=False)
    report = initialize_from(target, path)
    assert report['reinitialized'] == ['head.3.bias', 'head.3.weight']
    assert report['ignored'] == ['auxlayer.bias', 'auxlayer.weight']
    np.testing.assert_array_equal(target.trunk[0].weight.data().asnumpy(),
                                  source.trunk[0].weight.data().asnumpy())


# ----------------------------------------------------------------------------- the loop
def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path):
    # 24 samples / batch 4 = 6 iterations per epoch, 2 epochs; stopped at iteration 8 (inside
    # epoch 2). Dropout, BatchNorm, momentum, augmentation and warmup all take part.
    straight = tiny_net(seed=0)
    result = tiny_trainer(straight, save_dir=str(tmp_path / 'a')).fit()
    assert result['iteration'] == 12

    first = tiny_net(seed=0)
    stopped = tiny_trainer(first, save_dir=str(tmp_path / 'b')).fit(max_iterations=8)
    assert stopped['iteration'] == 8
    resumed_net = tiny_net(seed=42)  # a different initialization: the checkpoint must win
    resumed = tiny_trainer(resumed_net, save_dir=str(tmp_path / 'b'))
    resumed.resume()
    assert resumed.iteration == 8 and resumed.epoch == 1
    final = resumed.fit()
    assert final['iteration'] == 12
    assert_same_weights(straight, resumed_net)
    assert final['metrics']['mIoU'] == pytest.approx(result['metrics']['mIoU'], abs=1e-9)

    def records(folder):
        with open(os.path.join(folder, 'metrics.jsonl')) as f:
            return [(r['epoch'], r['iteration'], r['mIoU']) for r in map(json.loads, f)]
    assert records(str(tmp_path / 'a')) == records(str(tmp_path / 'b'))


def test_data_parallel_two_cpu_contexts_match_one(tmp_path):
    # No BatchNorm (per-device batch statistics would legitimately differ between 2+2 and 4)
    # and no dropout (each device has its own random stream): what remains must agree.
    single_net = tiny_net(seed=0, batchnorm=False, dropout=0)
    params = str(tmp_path / 'init.params')
    single_net.save_parameters(params)
    pair_ctx = [mx.cpu(0), mx.cpu(1)]
    pair_net = TinySegNet(batchnorm=False, dropout=0)
    pair_net.load_parameters(params, ctx=pair_ctx)

    single = tiny_trainer(single_net, ctx=[mx.cpu(0)], batch_size=4, val_interval=0)
    pair = tiny_trainer(pair_net, ctx=pair_ctx, batch_size=2, val_interval=0)
    single.fit(max_iterations=3)
    pair.fit(max_iterations=3)
    assert pair.total_batch_size == single.total_batch_size == 4
    assert pair.last_loss == pytest.approx(single.last_loss, rel=1e-5)
    assert_same_weights(single_net, pair_net)
    for param in pair_net.collect_params().values():  # both devices hold the same weights
        np.testing.assert_allclose(param.data(mx.cpu(0)).asnumpy(),
                                   param.data(mx.cpu(1)).asnumpy(), rtol=1e-6)
    # Evaluation splits batches the same way, including a last batch of 1 image < 2 devices.
    val = ShapesSegmentation('val', length=5, size=24, transform=SegmentationValTransform(24))
    one = evaluate_segmentation(single_net, val, ctx=[mx.cpu(0)], batch_size=2)
    two = evaluate_segmentation(pair_net, val, ctx=pair_ctx, batch_size=2)
    np.testing.assert_array_equal(one.confusion_matrix, two.confusion_matrix)


def test_accumulating_two_batches_of_two_equals_one_batch_of_four():
    # No BatchNorm (the statistics of 2 images are not those of 4) and no dropout (two forward
    # passes draw other masks than one): what remains must agree.
    whole_net = tiny_net(seed=0, batchnorm=False, dropout=0)
    parts_net = tiny_net(seed=0, batchnorm=False, dropout=0)
    whole = tiny_trainer(whole_net, batch_size=4, val_interval=0)
    parts = tiny_trainer(parts_net, batch_size=2, accumulate=2, val_interval=0)
    assert parts.total_batch_size == whole.total_batch_size == 4
    assert parts.iters_per_epoch == whole.iters_per_epoch == 6   # the schedule counts updates
    whole.fit(max_iterations=3)
    parts.fit(max_iterations=3)
    assert parts.iteration == 3 and parts.lr_scheduler.last_iter == whole.lr_scheduler.last_iter
    assert parts.last_loss == pytest.approx(whole.last_loss, rel=1e-5)
    assert_same_weights(whole_net, parts_net)  # gradients summed, then zeroed after each update


def test_resume_with_accumulation_reproduces_the_uninterrupted_run(tmp_path):
    settings = dict(batch_size=2, accumulate=2, val_interval=0)
    straight = tiny_net(seed=0)  # BatchNorm and dropout included
    tiny_trainer(straight, save_dir=str(tmp_path / 'a'), **settings).fit()
    tiny_trainer(tiny_net(seed=0), save_dir=str(tmp_path / 'b'), **settings).fit(
        max_iterations=7)
    resumed_net = tiny_net(seed=42)
    resumed = tiny_trainer(resumed_net, save_dir=str(tmp_path / 'b'), **settings)
    resumed.resume()
    assert resumed.iteration == 7
    assert resumed.fit()['iteration'] == 12
    assert_same_weights(straight, resumed_net)
    with pytest.raises(ValueError, match='accumulate must be at least 1'):
        tiny_trainer(tiny_net(), accumulate=0)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    # A learning rate that makes the weights overflow within a few updates; latest.ckpt is
    # written after every update until then.
    trainer = tiny_trainer(tiny_net(), save_dir=str(tmp_path), val_interval=0, lr=1e8,
                           warmup_epochs=0, checkpoint_interval=1)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert re.search(r'(the loss is (nan|inf)|made weights non-finite).* at epoch \d, '
                     r'iteration %d|At epoch \d, iteration %d .*(loss is (nan|inf)|gradients '
                     r'are not finite)' % (trainer.iteration, trainer.iteration), message), message
    assert 'learning rate' in message
    assert re.search(r'the last good checkpoint, .*latest.ckpt \(iteration \d+, all weights '
                     r'finite\), is unchanged', message), message
    assert 0 < trainer.iteration < 12
    last_good = load_checkpoint(trainer.latest_path)
    assert last_good['iteration'] <= trainer.iteration
    assert all(np.isfinite(v.asnumpy()).all() for v in last_good.weights().values())
    with open(os.path.join(str(tmp_path), 'train.log')) as f:
        assert 'training stopped' in f.read().lower()


# ----------------------------------------------------------------------------- scripts
# Slow: the README's default command trains a ResNet-18 FCN for minutes on the CPU.
@pytest.mark.slow
def test_default_train_command_reaches_080_miou_and_test_reproduces_it(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    train = subprocess.run([sys.executable, os.path.join(REPO, 'scripts/segmentation/train.py')],
                           cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    print(train.stdout)  # the measured mIoU and wall time, shown with pytest -s
    final = json.loads(re.search(r'^FINAL (.*)$', train.stdout, re.M).group(1))
    assert final['mIoU'] >= 0.80, train.stdout
    checkpoint = os.path.join(str(tmp_path), final['checkpoint'])
    out_json = str(tmp_path / 'eval.json')
    test = subprocess.run([sys.executable, os.path.join(REPO, 'scripts/segmentation/test.py'),
                           checkpoint, '--output', out_json], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stderr[-3000:]
    print(test.stdout)
    with open(out_json) as f:
        result = json.load(f)
    assert result['mIoU'] == pytest.approx(final['mIoU'], abs=1e-6)
    assert math.isfinite(result['pixAcc'])


def test_optimizer_states_follow_the_network_order_not_parameter_names():
    # gluon.Trainer sorts a dict of parameters by name; names carry global counters, so two
    # builds of one model in a process can sort differently (dense9/dense10), and a resume
    # handed momentum to the wrong arrays (a shape error in the full test run). TinySegNet's
    # auxlayer ('..._conv0_') sorts before its trunk ('..._hybridsequential0_').
    net = tiny_net()
    trainer = tiny_trainer(net)
    structural = [p.name for p in net.collect_params().values()]
    assert structural != sorted(structural)
    assert [p.name for p in trainer.trainer._params] == structural


def rewrite_meta(path, change):
    """Apply ``change`` to the meta data of the checkpoint at ``path`` (as another or an older
    gluonseg would have written it)."""
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(entries['meta.json'].decode('utf-8'))
    change(meta)
    entries['meta.json'] = json.dumps(meta).encode('utf-8')
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def test_resume_refuses_optimizer_states_of_another_or_an_unknown_layout(tmp_path):
    net = tiny_net()
    trainer = tiny_trainer(net, save_dir=str(tmp_path), val_interval=0)
    trainer.fit(max_iterations=1)
    path = trainer.latest_path
    layout = load_checkpoint(path)['optimizer_layout']
    # The order of the states: the network's, by structural names (no global counters)
    structural = net._collect_params_with_prefix()
    assert layout == [[name, list(param.shape)] for name, param in structural.items()]
    with pytest.raises(ValueError, match='not a parameter of the TinySegNet'):
        save_checkpoint(str(tmp_path / 'other.ckpt'), tiny_net(), trainer.trainer)
    assert not os.path.exists(str(tmp_path / 'other.ckpt'))
    assert tiny_trainer(tiny_net(seed=1), save_dir=str(tmp_path)).resume()['iteration'] == 1

    def refusal(layout_change):
        rewrite_meta(path, layout_change)
        other = tiny_trainer(tiny_net(), save_dir=str(tmp_path))
        before, schedule = weights_of(other.net), other.lr_scheduler.state_dict()
        with pytest.raises(CheckpointError) as err:
            other.resume()
        # refused before anything was loaded: a caller catching the error keeps its model
        after = weights_of(other.net)
        assert after.keys() == before.keys()
        for key in before:
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
        assert other.lr_scheduler.state_dict() == schedule and other.iteration == 0
        message = str(err.value)
        assert 'use --init-from %s (gluonseg train' % path in message
        assert 'gluonseg.engine.initialize_from(net, %r)' % path in message
        return message

    # states saved in another order (weight and bias of the first layer swapped)
    first, second = layout[0], layout[1]
    assert tuple(first[1]) != tuple(second[1])
    message = refusal(lambda meta: meta.update(optimizer_layout=[second, first] + layout[2:]))
    assert ('The optimizer states of %s were saved for other parameters than this trainer\'s '
            '(%d in the checkpoint, %d here): at index 0 the checkpoint has %s %s, the model '
            '%s %s.' % (path, len(layout), len(layout), second[0], tuple(second[1]), first[0],
                        tuple(first[1]))) in message
    # states of fewer parameters
    message = refusal(lambda meta: meta.update(optimizer_layout=layout[:-1]))
    assert ('(%d in the checkpoint, %d here): at index %d the checkpoint has nothing (it ends '
            'before), the model %s' % (len(layout) - 1, len(layout), len(layout) - 1,
                                       layout[-1][0])) in message
    # a checkpoint of an older gluonseg, which did not record the order of its states
    message = refusal(lambda meta: meta.pop('optimizer_layout'))
    assert ('%s holds optimizer states but not the order of the parameters they belong to'
            % path) in message


def test_trainer_check_before_loading_accepts_sizes_not_known_yet(tmp_path):
    """Checkpoint.check_trainer runs before the weights are loaded, when a network with
    deferred initialization does not know all its sizes yet: those match the recorded ones,
    the parameters, their order and the known sizes do not."""
    def dense(units):
        net = nn.Dense(units)  # input size deferred: weight (units, 0)
        net.initialize(mx.init.Xavier())
        return net, mx.gluon.Trainer(list(net.collect_params().values()), 'sgd',
                                     {'learning_rate': 0.1, 'momentum': 0.9})
    net, trainer = dense(3)
    with autograd.record():
        loss = net(mx.nd.ones((2, 4))).sum()
    loss.backward()
    trainer.step(2)
    path = save_checkpoint(str(tmp_path / 'dense.ckpt'), net, trainer)
    ckpt = load_checkpoint(path)
    assert ckpt['optimizer_layout'] == [['weight', [3, 4]], ['bias', [3]]]

    fresh, fresh_trainer = dense(3)
    assert fresh.weight.shape == (3, 0)
    ckpt.check_trainer(fresh_trainer, fresh)
    ckpt.load_into(fresh)
    ckpt.restore_trainer(fresh_trainer, fresh)
    assert fresh.weight.shape == (3, 4)
    np.testing.assert_array_equal(fresh.weight.data().asnumpy(), net.weight.data().asnumpy())

    wrong, wrong_trainer = dense(5)
    with pytest.raises(CheckpointError, match=r'at index 0 the checkpoint has weight \(3, 4\), '
                                              r'the model weight \(5, 0\)'):
        ckpt.check_trainer(wrong_trainer, wrong)
