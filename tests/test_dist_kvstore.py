"""Distributed training with kvstore dist_sync on one machine: a scheduler, a server and two
workers on 127.0.0.1 train a tiny model, each on its half of every batch; both end with the
weights of one process training on the whole batches over two CPU contexts, only worker 0
validates and writes files, and a run stopped and resumed by a second job ends where an
uninterrupted one does. Plus the kvstore setting's errors and the batch sharding.

Run as ``python tests/test_dist_kvstore.py OUT_DIR ITERATIONS [RESUME_CKPT]`` it is one worker
(the cluster sets DMLC_ROLE=worker and the rest of the environment).
"""
import json
import os
import socket
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluonseg.engine import EpochBatchSampler
from gluonseg.engine.distributed import create_kvstore
from fixtures_training import tiny_net, tiny_trainer, weights_of

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 180  # seconds for a whole job; a hung parameter server fails the test instead

# The model and batches of every run here: 24 Shapes scenes, 4 per iteration (2 per worker or
# per device), no BatchNorm and no dropout (per-device statistics and random streams would
# legitimately differ between the layouts compared).
SETTINGS = dict(batch_size=2, checkpoint_interval=0)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_job(out_dir, iterations, resume=None):
    """Start a scheduler, a server and two workers; return the workers' results by rank."""
    env = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(free_port()),
               DMLC_NUM_SERVER='1', DMLC_NUM_WORKER='2', DMLC_NODE_HOST='127.0.0.1',
               OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
                   [HERE, os.path.dirname(HERE), os.environ.get('PYTHONPATH', '')]))
    # Importing mxnet with DMLC_ROLE=scheduler/server runs that role until the job ends.
    roles = [subprocess.Popen([sys.executable, '-c', 'import mxnet'],
                              env=dict(env, DMLC_ROLE=role), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for role in ('scheduler', 'server')]
    command = [sys.executable, os.path.abspath(__file__), str(out_dir), str(iterations)]
    workers = [subprocess.Popen(command + ([resume] if resume else []),
                                env=dict(env, DMLC_ROLE='worker'), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outputs = [w.communicate(timeout=TIMEOUT) for w in workers]
        for role in roles:
            role.wait(timeout=60)
    finally:
        for process in roles + workers:
            if process.poll() is None:
                process.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    return sorted(results, key=lambda r: r['rank'])


def worker_main(out_dir, iterations, resume=None):
    net = tiny_net(seed=0, batchnorm=False, dropout=0)
    trainer = tiny_trainer(net, kvstore='dist_sync', val_interval=1, **SETTINGS)
    # Each worker writes into its own folder, to see that only worker 0 writes anything.
    trainer.save_dir = os.path.join(out_dir, 'worker%d' % trainer.rank)
    if resume:
        trainer.resume(resume)
    result = trainer.fit(max_iterations=iterations)
    np.savez(os.path.join(out_dir, 'weights%d.npz' % trainer.rank), **weights_of(net))
    print(json.dumps({'rank': trainer.rank, 'workers': trainer.num_workers,
                      'iteration': result['iteration'], 'loss': result['last_loss'],
                      'iters_per_epoch': trainer.iters_per_epoch}))


def single_process(iterations):
    """The same training in one process, the batches split over two CPU contexts."""
    ctx = [mx.cpu(0), mx.cpu(1)]
    net = tiny_net(seed=0, batchnorm=False, dropout=0, ctx=ctx)
    trainer = tiny_trainer(net, ctx=ctx, val_interval=0, **SETTINGS)
    trainer.fit(max_iterations=iterations)
    return net, trainer


def load_weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_dist_sync_workers_match_one_process_and_resume(tmp_path):
    initial = weights_of(tiny_net(seed=0, batchnorm=False, dropout=0))
    reference_net, reference = single_process(3)

    results = run_job(tmp_path / 'straight', 3)
    assert [r['rank'] for r in results] == [0, 1] and all(r['workers'] == 2 for r in results)
    # 24 samples / (2 per worker x 2 workers): the schedule counts global batches
    assert all(r['iters_per_epoch'] == 6 and r['iteration'] == 3 for r in results)
    assert results[0]['loss'] == results[1]['loss']            # the loss of the whole batch
    assert results[0]['loss'] == pytest.approx(reference.last_loss, rel=1e-5)
    first, second = [load_weights(tmp_path / 'straight' / ('weights%d.npz' % r))
                     for r in (0, 1)]
    expected = weights_of(reference_net)
    for key in initial:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        np.testing.assert_allclose(first[key], expected[key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    assert any(np.abs(first[k] - initial[k]).max() > 1e-3 for k in initial)
    # Only worker 0 writes the run's files.
    assert not os.path.exists(tmp_path / 'straight' / 'worker1')
    assert sorted(os.listdir(tmp_path / 'straight' / 'worker0')) == ['latest.ckpt', 'train.log']

    # A second job resumes the first one's checkpoint on both workers and finishes the epoch
    # (6 iterations), which worker 0 alone validates.
    checkpoint = str(tmp_path / 'straight' / 'worker0' / 'latest.ckpt')
    resumed = run_job(tmp_path / 'resumed', 6, resume=checkpoint)
    assert [r['iteration'] for r in resumed] == [6, 6]
    assert not os.path.exists(tmp_path / 'resumed' / 'worker1')
    with open(tmp_path / 'resumed' / 'worker0' / 'metrics.jsonl') as f:
        assert [json.loads(line)['iteration'] for line in f] == [6]
    reference_net, reference = single_process(6)
    expected = weights_of(reference_net)
    for rank in (0, 1):
        got = load_weights(tmp_path / 'resumed' / ('weights%d.npz' % rank))
        for key in initial:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6,
                                       err_msg=key)


def test_workers_share_one_order_and_take_their_slice_in_pieces():
    whole = list(EpochBatchSampler(10, 4, seed=5, epoch=2))
    halves = [list(EpochBatchSampler(10, 4, seed=5, epoch=2, part=p, num_parts=2))
              for p in (0, 1)]
    assert len(whole) == 2 and [len(h) for h in halves] == [2, 2]
    for batch, first, second in zip(whole, *halves):
        assert batch == first + second
    resumed = list(EpochBatchSampler(10, 4, seed=5, epoch=2, start_batch=1, part=1,
                                     num_parts=2))
    assert resumed == halves[1][1:]
    # gradient accumulation: each worker's slice comes in pieces, one per accumulated batch
    pieces = list(EpochBatchSampler(10, 4, seed=5, epoch=2, part=1, num_parts=2,
                                    micro_batches=2))
    assert pieces == [[key] for half in halves[1] for key in half]
    with pytest.raises(ValueError, match='part 0 of 3 equal parts of a batch of 4 in 1 equal'):
        EpochBatchSampler(10, 4, seed=5, epoch=2, num_parts=3)


def test_kvstore_setting_errors_name_the_problem(monkeypatch):
    assert create_kvstore(None, [mx.cpu()]) == (None, 0, 1)
    assert create_kvstore(None, [mx.cpu(0), mx.cpu(1)]) == ('device', 0, 1)
    assert create_kvstore('local', [mx.cpu(0), mx.cpu(1)]) == ('local', 0, 1)
    with pytest.raises(ValueError, match="Unknown kvstore 'dist'; choose one of local"):
        create_kvstore('dist', [mx.cpu()])
    with pytest.raises(ValueError, match="'nccl' sums gradients between GPUs, but the devices "
                                         r"are cpu\(0\); use 'device'"):
        create_kvstore('nccl', [mx.cpu()])
    monkeypatch.delenv('DMLC_ROLE', raising=False)
    with pytest.raises(ValueError, match="'dist_sync' trains as one worker of a parameter-"
                                         "server job: start this process with DMLC_ROLE=worker"):
        create_kvstore('dist_sync', [mx.cpu()])


if __name__ == '__main__':
    worker_main(*sys.argv[1:3], *sys.argv[3:4])
