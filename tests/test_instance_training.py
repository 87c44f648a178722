"""Mask R-CNN training loop and ``gluonseg train`` / ``gluonseg eval`` (the library code of
scripts/instance) on a few tiny Shapes images: the loss falls, checkpoints are written and
resume exactly, evaluation runs on them; gradient accumulation and float16's loss scaling give
the updates they stand for; plus the data pieces (transform, batching, COCO conversion)."""
import json
import os
import re

import mxnet as mx
import numpy as np
import pytest

from gluonseg.data import ShapesInstance
from gluonseg.data.coco_format import instances_to_coco
from gluonseg.data.instance_transforms import InstanceTrainTransform, instance_batchify
from gluonseg.engine import load_checkpoint
from gluonseg.tools import evaluate, instance_evaluate, train
from fixtures_training import (assert_same_trained_weights, install_loss_scaler, instance_trainer,
                               same_start, trained_weights)

TINY = ['--train-length', '4', '--val-length', '2', '--image-size', '64', '--short', '64',
        '--max-size', '64', '--batch-size', '2', '--epochs', '3', '--lr', '0.02',
        '--lr-warmup', '1', '--lr-decay-epoch', '--seed', '1', '--no-progress', '--quiet']


def weights(path):
    return {k: v.asnumpy() for k, v in load_checkpoint(path).weights().items()}


# ---------------------------------------------------------------- data pieces

def test_train_transform_resizes_flips_and_keeps_boxes_on_the_masks():
    image, boxes, ids, masks = ShapesInstance('train', length=1, size=(60, 80))[0]
    transform = InstanceTrainTransform(short=30, max_size=1000, flip=True)
    transform.rng = np.random.RandomState(0)
    flipped = None
    for seed in range(8):  # find one flipped and one plain draw
        transform.rng = np.random.RandomState(seed)
        out = transform(image, boxes, ids, masks)
        assert out[0].shape == (3, 30, 40) and out[3].shape == (len(boxes), 30, 40)
        np.testing.assert_allclose(out[1][:, [1, 3]], boxes[:, [1, 3]] / 2, atol=1e-5)
        if np.allclose(out[1][:, 0], boxes[:, 0] / 2):
            continue
        flipped = out
    assert flipped is not None
    for box, mask in zip(flipped[1], flipped[3]):
        cols = np.flatnonzero(mask.any(axis=0))
        # mirrored inclusive columns of the half-size mask: within a pixel of the box
        assert abs(cols[0] - box[0]) <= 1 and abs(cols[-1] - box[2]) <= 1


def test_batchify_pads_images_and_objects():
    a = (np.ones((3, 10, 12), np.float32), np.array([[1, 1, 5, 5]], np.float32),
         np.array([2.]), np.ones((1, 10, 12), np.uint8))
    b = (np.ones((3, 8, 14), np.float32), np.zeros((2, 4), np.float32), np.array([0., 1.]),
         np.ones((2, 8, 14), np.uint8))
    images, boxes, ids, masks = instance_batchify([a, b])
    assert images.shape == (2, 3, 10, 14) and masks.shape == (2, 2, 10, 14)
    assert images[0, :, :, 12:].sum() == 0 and images[1, :, 8:].sum() == 0
    np.testing.assert_array_equal(ids.asnumpy(), [[2, -1], [0, 1]])
    np.testing.assert_array_equal(boxes.asnumpy()[0, 1], [-1, -1, -1, -1])
    assert masks.dtype == np.uint8 and masks[0, 1].sum() == 0


def test_instances_to_coco_keeps_boxes_masks_and_classes():
    data = ShapesInstance('val', length=3, size=(48, 48))
    coco = instances_to_coco(data)
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(data.classes)
    _, boxes, ids, masks = data[1]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    assert len(anns) == len(boxes)
    for ann, box, class_id, mask in zip(anns, boxes, ids, masks):
        assert ann['category_id'] == class_id + 1
        assert ann['bbox'] == [box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1]
        np.testing.assert_array_equal(coco.annToMask(ann), mask)


# ---------------------------------------------------------------- loop and scripts

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """One uninterrupted tiny run (the model name choosing the task) and one stopped after 2
    iterations then resumed (the task chosen by --task: the same model by default)."""
    base = tmp_path_factory.mktemp('mrcnn')
    full, split = str(base / 'full'), str(base / 'split')
    assert train.main(['--model', 'mask_rcnn_fpn_resnet18_v1b_small'] + TINY +
                      ['--save-dir', full]) == 0
    assert train.main(['--task', 'instance'] + TINY + ['--save-dir', split,
                                                      '--max-iterations', '2']) == 0
    stopped = load_checkpoint(os.path.join(split, 'latest.ckpt'))
    assert train.main(TINY + ['--save-dir', split, '--resume'], task='instance') == 0
    return full, split, stopped


def test_training_writes_checkpoints_and_the_loss_falls(tiny_run):
    full, _, _ = tiny_run
    for name in ('latest.ckpt', 'best.ckpt', 'train.log', 'metrics.jsonl'):
        assert os.path.isfile(os.path.join(full, name)), name
    with open(os.path.join(full, 'metrics.jsonl')) as f:
        records = [json.loads(line) for line in f]
    assert [r['epoch'] for r in records] == [1, 2, 3]
    assert records[-1]['train_loss'] < 0.8 * records[0]['train_loss'], records
    for record in records:
        assert 0 <= record['segm/AP'] <= 1 and 0 <= record['bbox/AP'] <= 1
    latest = load_checkpoint(os.path.join(full, 'latest.ckpt'))
    assert latest['iteration'] == 6 and latest.has_trainer_states
    assert latest['model']['builder'] == 'mask_rcnn'
    assert latest['model']['kwargs']['classes'] == list(ShapesInstance.CLASSES)
    best = load_checkpoint(os.path.join(full, 'best.ckpt'))
    assert best['best']['segm/AP'] == max(r['segm/AP'] for r in records)


def test_resume_continues_the_interrupted_run_exactly(tiny_run):
    full, split, stopped = tiny_run
    assert stopped['iteration'] == 2 and stopped['epoch'] == 1
    resumed = load_checkpoint(os.path.join(split, 'latest.ckpt'))
    assert resumed['iteration'] == 6
    a, b = weights(os.path.join(full, 'latest.ckpt')), weights(os.path.join(split,
                                                                            'latest.ckpt'))
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    with open(os.path.join(split, 'metrics.jsonl')) as f:
        assert [json.loads(line)['epoch'] for line in f] == [1, 2, 3]  # none repeated


def test_eval_scores_a_checkpoint_and_writes_results(tiny_run, tmp_path, capsys, monkeypatch):
    full, _, _ = tiny_run
    prefix = str(tmp_path / 'shapes_eval')
    capsys.readouterr()
    # the checkpoint chooses the task
    assert evaluate.main([os.path.join(full, 'best.ckpt'), '--save-prefix', prefix,
                          '--no-progress']) == 0
    out = capsys.readouterr().out
    assert 'Average Precision' in out and out.count('segm') >= 2
    for suffix in ('_bbox.json', '_segm.json', '_metrics.json'):
        assert os.path.isfile(prefix + suffix), suffix
    with open(prefix + '_metrics.json') as f:
        metrics = json.load(f)
    assert metrics['dataset'] == 'shapes' and metrics['images'] == 2
    assert metrics['short'] == 64 and metrics['score_thresh'] == 0.001
    # the same numbers as the training run's last validation of this checkpoint
    best = load_checkpoint(os.path.join(full, 'best.ckpt'))
    np.testing.assert_allclose(metrics['segm/AP'], best['best']['segm/AP'], atol=1e-6)
    with open(prefix + '_segm.json') as f:
        results = json.load(f)
    assert all(r['image_id'] in (1, 2) and r['score'] >= 0.001 for r in results)

    # a crash while writing the metrics (disk full) leaves the previous file whole
    with open(prefix + '_metrics.json') as f:
        written = f.read()

    class DiskFull(object):
        dumps = staticmethod(json.dumps)

        @staticmethod
        def dump(obj, f, **kwargs):
            f.write(json.dumps(obj)[:10])
            raise OSError('No space left on device')

    monkeypatch.setattr(instance_evaluate, 'json', DiskFull)
    with pytest.raises(OSError, match='No space left'):
        evaluate.main(['--checkpoint', os.path.join(full, 'best.ckpt'), '--save-prefix',
                       prefix, '--no-progress'], task='instance')
    with open(prefix + '_metrics.json') as f:
        assert f.read() == written
    assert sorted(os.listdir(str(tmp_path))) == ['shapes_eval' + suffix for suffix in (
        '_bbox.json', '_metrics.json', '_segm.json')]  # no temporary file left


def test_eval_needs_a_model_or_a_checkpoint(capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args([], task='instance')
    assert 'give either a checkpoint or --model' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.parse_args(['--model', 'mask_rcnn_resnet18_v1b_coco'])
    assert '--model needs --pretrained or --params' in capsys.readouterr().err


def test_the_model_chooses_the_task_and_the_other_tasks_options_are_refused(capsys):
    args = train.parse_args(['--model', 'mask_rcnn_resnet50_v1b_coco', '--dataset', 'coco'])
    assert args.task == 'instance' and (args.network, args.fpn, args.small) == (
        'resnet50_v1b', False, False)
    assert args.save_dir == os.path.join('runs', 'instance', 'coco', 'mask_rcnn_resnet50_v1b_coco')
    assert train.parse_args(['--model', 'fcn_resnet18_shapes']).task == 'semantic'
    for argv, message in (
            (['--model', 'mask_rcnn_fpn_resnet18_v1b_small', '--crop-size', '64'],
             '--crop-size is an option of semantic segmentation; the task is Mask R-CNN '
             '(instance) (of --model mask_rcnn_fpn_resnet18_v1b_small)'),
            (['--fpn'], '--fpn is an option of Mask R-CNN (instance); the task is semantic '
             'segmentation (the default)'),
            (['--task', 'semantic', '--model', 'mask_rcnn_resnet50_v1b_coco'],
             '--model mask_rcnn_resnet50_v1b_coco is a Mask R-CNN, not a semantic segmentation '
             'model: leave out --task'),
            (['--task', 'instance', '--dataset', 'voc'], 'Mask R-CNN trains on shapes or coco'),
            (['--model', 'mask_rcnn_fpn_resnet18_v1b_small', '--no-fpn'],
             '--fpn False contradicts the model mask_rcnn_fpn_resnet18_v1b_small')):
        with pytest.raises(SystemExit):
            train.parse_args(argv)
        assert message in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):
        evaluate.parse_args(['--model', 'mask_rcnn_resnet18_v1b_coco', '--pretrained',
                             '--multi-scale'])
    assert '--multi-scale is an option of semantic segmentation' in capsys.readouterr().err


def test_train_defaults_are_the_published_recipe_on_coco():
    args = train.parse_args(['--task', 'instance', '--dataset', 'coco', '--gpus',
                             '0,1,2,3,4,5,6,7'])
    assert (args.network, args.fpn, args.batch_size, args.epochs) == ('resnet50_v1b', False,
                                                                      1, 26)
    assert args.lr == pytest.approx(0.01) and args.lr_warmup == 1000
    assert args.lr_decay_epoch == [17, 23] and args.lr_warmup_factor == pytest.approx(1 / 3)
    assert args.freeze_stages == 1 and args.freeze_bn and args.pretrained_base
    assert (args.short, args.max_size, args.wd, args.seed) == (800, 1333, 1e-4, 233)
    shapes = train.parse_args([], task='instance')
    assert shapes.dataset == 'shapes' and shapes.small and shapes.fpn


def test_coco_lr_and_warmup_follow_the_images_per_update(monkeypatch):
    # The recipe's 8 images per update on one GPU by accumulation, or on 2 workers x 4 GPUs:
    # the same lr and warmup as 8 GPUs x 1 image.
    def parse(argv):
        return train.parse_args(argv, task='instance')
    accumulated = parse(['--dataset', 'coco', '--gpus', '0', '--accumulate', '8'])
    assert accumulated.lr == pytest.approx(0.01) and accumulated.lr_warmup == 1000
    monkeypatch.setenv('DMLC_NUM_WORKER', '2')
    workers = parse(['--dataset', 'coco', '--gpus', '0,1,2,3', '--kvstore', 'dist_sync'])
    assert workers.lr == pytest.approx(0.01)
    alone = parse(['--dataset', 'coco', '--gpus', '0,1,2,3'])  # no dist kvstore
    assert alone.lr == pytest.approx(0.005)


def test_train_runs_on_coco_format_files_and_eval_reads_them(tmp_path, capsys):
    from fixtures_data import rle_of, write_coco
    images = [{'id': i, 'height': 64, 'width': 64} for i in (1, 2)]
    annotations = []
    for image_id, (y0, x0) in ((1, (8, 10)), (2, (20, 24))):
        mask = np.zeros((64, 64), np.uint8)
        mask[y0:y0 + 30, x0:x0 + 28] = 1
        annotations.append({'image_id': image_id, 'category_id': 5, 'area': 840.0,
                            'segmentation': rle_of(mask), 'bbox': [x0, y0, 28, 30]})
    for split in ('train', 'val'):
        write_coco(tmp_path, split, [dict(i) for i in images], [(5, 'block')], annotations)
    save_dir = str(tmp_path / 'run')
    assert train.main(['--task', 'instance', '--dataset', 'coco', '--root', str(tmp_path),
                       '--network', 'resnet18_v1b', '--fpn', '--small', '--no-pretrained-base',
                       '--freeze-stages', '-1', '--no-freeze-bn', '--short', '64',
                       '--max-size', '64', '--batch-size', '1', '--epochs', '1',
                       '--lr', '0.01', '--lr-warmup', '1', '--save-dir', save_dir,
                       '--no-progress', '--quiet']) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['dataset'] == 'coco' and summary['iteration'] == 2
    assert 0 <= summary['segm/AP'] <= 1
    ckpt = load_checkpoint(os.path.join(save_dir, 'latest.ckpt'))
    assert ckpt['classes'] == ['block'] and ckpt['args']['root'] == str(tmp_path)
    prefix = str(tmp_path / 'eval')
    assert evaluate.main([os.path.join(save_dir, 'latest.ckpt'), '--save-prefix', prefix,
                          '--no-progress']) == 0
    with open(prefix + '_metrics.json') as f:
        metrics = json.load(f)
    assert metrics['dataset'] == 'coco' and metrics['images'] == 2
    with open(prefix + '_segm.json') as f:
        results = json.load(f)
    assert results and all(r['category_id'] == 5 for r in results)  # the file's category id


# ------------------------------------------- accumulation and float16 loss scaling

def test_accumulating_two_images_equals_two_devices_of_one_image(tmp_path):
    # Each device's loss is a mean over its own images' samples (not over the batch's), so
    # an update of 2 images accumulated is compared with 2 devices x 1 image, the other way
    # of averaging 2 per-image losses; the anchor and RoI sampling draws the same numbers
    # in the same order (image 1, then image 2) both ways.
    parts_net, pair_net = same_start(2, tmp_path)
    parts = instance_trainer(parts_net, accumulate=2)
    pair = instance_trainer(pair_net, ctx=[mx.cpu(0), mx.cpu(1)])
    start = trained_weights(parts)
    assert parts.total_batch_size == pair.total_batch_size == 2
    assert parts.iters_per_epoch == pair.iters_per_epoch == 2
    parts.fit(max_iterations=2)
    pair.fit(max_iterations=2)
    assert parts.iteration == pair.iteration == 2
    assert parts.last_loss == pytest.approx(pair.last_loss, rel=1e-5)
    assert_same_trained_weights(pair, parts)  # summed, divided by 2, zeroed after each update
    moved = trained_weights(parts)
    assert max(np.abs(moved[k] - start[k]).max() for k in start) > 1e-4


def test_loss_scaling_with_accumulation_gives_the_unscaled_updates_or_skips(tmp_path):
    # float16 AMP needs a GPU (amp.init('float16') casts that MXNet cannot run on the CPU),
    # so the LossScaler amp.init_trainer would attach is installed on a float32 trainer: the
    # scaling path (BaseTrainer._backward with amp.scale_loss, the Trainer's overflow check)
    # is the one float16 runs, only the float16 casts are left out.
    plain_net, scaled_net, overflow_net = same_start(3, tmp_path)
    plain = instance_trainer(plain_net, accumulate=2)
    plain.fit(max_iterations=2)
    scaled = instance_trainer(scaled_net, accumulate=2)
    install_loss_scaler(scaled, 1024.0, 1024.0)  # a power of two: scaling is exact
    scaled.fit(max_iterations=2)
    assert scaled.skipped_updates == 0 and scaled._loss_scaler.loss_scale == 1024.0
    assert scaled.last_loss == pytest.approx(plain.last_loss, rel=1e-5)  # reported unscaled
    assert_same_trained_weights(plain, scaled)

    overflow = instance_trainer(overflow_net, accumulate=2)
    scaler = install_loss_scaler(overflow, float('inf'), 1024.0)
    before = trained_weights(overflow)
    overflow.fit(max_iterations=1)
    assert overflow.skipped_updates == 1 and np.isfinite(overflow.last_loss)
    assert (scaler.loss_scale, scaler._next_loss_scale) == (1024.0, 512.0)
    after = trained_weights(overflow)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # not applied
    # the skipped update's accumulated gradients were dropped: the next one starts clean
    assert all(not p.grad().asnumpy().any() for p in overflow._accumulated)


def test_resume_refuses_the_optimizer_states_of_other_trainable_parameters(tiny_run, tmp_path,
                                                                            capsys):
    # The stem and two stages frozen (the Shapes run trained the whole backbone): the weights
    # load, but the trainer updates fewer parameters, and the saved momentum would land on
    # other arrays.
    full, _, _ = tiny_run
    checkpoint = os.path.join(full, 'latest.ckpt')
    capsys.readouterr()
    assert train.main(TINY + ['--save-dir', str(tmp_path), '--resume', checkpoint,
                              '--freeze-stages', '2'], task='instance') == 2
    err = capsys.readouterr().err
    assert ('error: cannot resume: The optimizer states of %s were saved for other parameters'
            % checkpoint) in err
    match = re.search(r'\((\d+) in the checkpoint, (\d+) here\): at index 0 the checkpoint '
                      r'has (\S+) \(', err)
    assert match and int(match.group(2)) < int(match.group(1)), err
    assert match.group(3) == load_checkpoint(checkpoint)['optimizer_layout'][0][0]
    assert 'gluonseg.engine.initialize_from(net, %r)' % checkpoint in err
    assert not os.listdir(tmp_path)  # nothing written
