"""MaskRCNN while training: the training forward's outputs and targets, frozen backbone
parts, and class changes (reset_class, get_model(..., classes=...))."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import gluonseg
from gluonseg.model_zoo.rcnn.losses import MaskRCNNLoss
from gluonseg.model_zoo.rcnn.mask_rcnn import mask_rcnn
from gluonseg.model_zoo.registry import Weights, model_info
from fixtures_training import SMALL, small_net

def toy_batch():
    """Two 64x64 images: one with two objects, one with one object and a padding row."""
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.randn(2, 3, 64, 64))
    boxes = mx.nd.array([[[4, 4, 30, 24], [34, 30, 60, 60]], [[10, 12, 40, 50], [-1] * 4]])
    ids = mx.nd.array([[0, 2], [1, -1]])
    masks = np.zeros((2, 2, 64, 64), np.uint8)
    masks[0, 0, 4:25, 4:31] = 1
    masks[0, 1, 30:61, 34:61] = 1
    masks[1, 0, 12:51, 10:41] = 1
    return x, boxes, ids, mx.nd.array(masks, dtype='uint8')


@pytest.mark.parametrize('fpn', [True, False])
def test_training_forward_returns_heads_on_sampled_rois_and_their_targets(fpn):
    net = small_net(fpn)
    x, boxes, ids, masks = toy_batch()
    np.random.seed(0)
    with autograd.record():
        out = net(x, boxes, ids, masks)
    anchors = out.rpn_logits.shape[1]
    assert out.rpn_logits.shape == (2, anchors) and out.rpn_deltas.shape == (2, anchors, 4)
    assert out.rpn_cls_targets.shape == (2, anchors)
    rpn_labels = out.rpn_cls_targets.asnumpy()
    for b, objects in enumerate((2, 1)):
        positives = (rpn_labels[b] == 1).sum()
        assert objects <= positives <= 32  # every box has an anchor; half of 64 at most
        assert (rpn_labels[b] >= 0).sum() <= 64
        np.testing.assert_array_equal(out.rpn_box_masks.asnumpy()[b, :, 0],
                                      rpn_labels[b] == 1)
    labels = out.cls_targets.asnumpy()
    num_pos = out.box_pred.shape[0]
    # positives first, at most a quarter of the 32 RoIs of each image; the appended boxes
    # make every object positive
    assert 3 <= num_pos <= 16 and (labels[:num_pos] > 0).all() and (labels[num_pos:] == 0).all()
    assert out.cls_logits.shape == (len(labels), 4) and len(labels) <= 64
    assert set(labels[:num_pos]) <= {1, 2, 3}
    assert out.box_targets.shape == (num_pos, 4)
    side = net.mask_size
    assert out.mask_logits.shape == (num_pos, side, side) == out.mask_targets.shape
    targets = out.mask_targets.asnumpy()
    assert targets.min() >= 0 and targets.max() <= 1 and targets.mean() > 0.5


@pytest.mark.parametrize('fpn', [True, False])
def test_training_forward_picks_the_ground_truth_class_of_each_positive(fpn):
    # frozen BatchNorm: C4's stage 4 would otherwise normalise over the batch of RoIs
    net = small_net(fpn, frozen_bn=True)
    x, boxes, ids, masks = toy_batch()
    with autograd.record():
        out = net.forward_train(x, boxes, ids, masks, rng=np.random.RandomState(1))
    num_pos = out.box_pred.shape[0]
    classes = out.cls_targets.asnumpy()[:num_pos].astype(int) - 1
    # the heads on the positive RoIs, all classes, by hand (train mode: BatchNorm on the
    # batch's statistics, as in the training pass)
    with autograd.train_mode():
        features = net.features(x)
        features = list(features) if isinstance(features, (list, tuple)) else [features]
        head_input = net._roi_head_input(mx.nd, out.rois[:num_pos], features)
        all_boxes = net.box_predictor(net.box_features(head_input)).asnumpy()
        all_masks = net.mask(head_input).asnumpy()
    rows = np.arange(num_pos)
    np.testing.assert_allclose(out.box_pred.asnumpy(),
                               all_boxes.reshape(num_pos, 3, 4)[rows, classes], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(out.mask_logits.asnumpy(), all_masks[rows, classes],
                               rtol=1e-4, atol=1e-5)
    # the same generator state gives the same samples
    with autograd.record():
        again = net.forward_train(x, boxes, ids, masks, rng=np.random.RandomState(1))
    np.testing.assert_array_equal(again.rois.asnumpy(), out.rois.asnumpy())


def test_a_few_sgd_steps_on_one_batch_lower_every_loss():
    net = small_net()
    x, boxes, ids, masks = toy_batch()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.02,
                                                         'momentum': 0.9})
    loss = MaskRCNNLoss()
    history = []
    for step in range(12):
        np.random.seed(step)
        with autograd.record():
            total, terms = loss(net(x, boxes, ids, masks))
        total.backward()
        trainer.step(1)
        history.append({k: float(v.asscalar()) for k, v in terms.items()})
    first, last = history[0], history[-1]
    assert sum(last.values()) < 0.7 * sum(first.values()), (first, last)
    for term in ('rpn_cls', 'rcnn_cls', 'mask'):
        assert last[term] < first[term], (term, first, last)


def test_training_needs_targets_and_inference_refuses_them():
    net = small_net()
    x, boxes, ids, masks = toy_batch()
    with autograd.record():
        with pytest.raises(TypeError, match='needs the targets'):
            net(x)
    with pytest.raises(TypeError, match='only in training mode'):
        net(x, boxes, ids, masks)
    with autograd.record():
        with pytest.raises(ValueError, match=r'gt_masks must be \(B, G, H, W\)'):
            net(x, boxes, ids, masks[:, :, :32])


def test_hybridized_inference_is_unchanged_by_training_calls():
    net = small_net()
    x, boxes, ids, masks = toy_batch()
    net.hybridize()
    before = [o.asnumpy() for o in net(x)]
    with autograd.record():
        net(x, boxes, ids, masks)  # no update: the inference graph must be the same
    after = [o.asnumpy() for o in net(x)]
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert before[0].shape == (2, 20, 1)  # test-time proposals, not the training ones


@pytest.mark.parametrize('fpn', [True, False])
def test_freeze_backbone_stops_stem_stage1_and_batchnorm(fpn):
    net = mask_rcnn(18, 'v1b', fpn=fpn, classes=('a',))
    names = net.freeze_backbone()
    if fpn:
        body = net.features.body
        stem_conv, stage1, stage2, bn = body.conv1, body.layer1, body.layer2, body.layer3[0].bn1
    else:
        stem_conv, stage1, stage2, bn = (net.features[0], net.features[4], net.features[5],
                                         net.top_features[0][0].bn1)
    assert stem_conv.weight.grad_req == 'null'
    assert all(p.grad_req == 'null' for p in stage1.collect_params().values())
    assert stage2[0].conv1.weight.grad_req == 'write'
    assert bn.gamma.grad_req == 'null' and bn.beta.grad_req == 'null'
    assert net.rpn.collect_params() and all(
        p.grad_req != 'null' for n, p in net.rpn.collect_params().items()
        if not n.endswith('anchors'))
    assert net.mask.mask.weight.grad_req == 'write'
    assert stem_conv.weight.name in names and stage2[0].conv1.weight.name not in names
    # stages=-1, batchnorm=False: nothing
    other = mask_rcnn(18, 'v1b', fpn=fpn, classes=('a',))
    assert other.freeze_backbone(-1, False) == []


# ---------------------------------------------------------------- other classes

def class_rows(net):
    return {'cls_w': net.class_predictor.weight.data().asnumpy(),
            'cls_b': net.class_predictor.bias.data().asnumpy(),
            'box_w': net.box_predictor.weight.data().asnumpy(),
            'mask_w': net.mask.mask.weight.data().asnumpy(),
            'mask_b': net.mask.mask.bias.data().asnumpy()}


def randomize_biases(net):
    for block in (net.class_predictor, net.box_predictor, net.mask.mask):
        block.bias.set_data(mx.nd.random.normal(shape=block.bias.shape))


def test_reset_class_reuses_rows_of_kept_classes_by_name():
    net = small_net(classes=('person', 'car', 'dog'))
    randomize_biases(net)
    old = class_rows(net)
    net.reset_class(['zebra', 'person', 'dog'], reuse_weights=True)
    new = class_rows(net)
    assert net.classes == ('zebra', 'person', 'dog') and net.num_class == 3
    assert new['cls_w'].shape == old['cls_w'].shape  # same count here, different rows
    for new_index, old_index in ((1, 0), (2, 2)):  # person, dog
        np.testing.assert_array_equal(new['cls_w'][new_index + 1], old['cls_w'][old_index + 1])
        np.testing.assert_array_equal(new['cls_b'][new_index + 1], old['cls_b'][old_index + 1])
        np.testing.assert_array_equal(new['box_w'][4 * new_index:4 * new_index + 4],
                                      old['box_w'][4 * old_index:4 * old_index + 4])
        np.testing.assert_array_equal(new['mask_w'][new_index], old['mask_w'][old_index])
        np.testing.assert_array_equal(new['mask_b'][new_index], old['mask_b'][old_index])
    np.testing.assert_array_equal(new['cls_w'][0], old['cls_w'][0])  # background kept
    assert not np.allclose(new['cls_w'][1], old['cls_w'][1])  # zebra is new
    assert not new['mask_b'][0] == old['mask_b'][0]


def test_reset_class_without_reuse_reinitializes_and_predicts_the_new_classes():
    net = small_net(classes=('person', 'car', 'dog'))
    net.hybridize()
    x = toy_batch()[0]
    net(x)
    old = class_rows(net)
    net.reset_class(['cat', 'bird'])
    new = class_rows(net)
    assert new['cls_w'].shape == (3, old['cls_w'].shape[1])
    assert new['box_w'].shape == (8, old['box_w'].shape[1])
    assert new['mask_w'].shape[0] == 2
    assert not np.allclose(new['cls_w'][0], old['cls_w'][0])
    ids, scores, boxes, masks = [o.asnumpy() for o in net(x)]  # cached graph rebuilt
    assert set(ids[ids >= 0]) <= {0, 1}
    layout = {k: p.shape for k, p in net._collect_params_with_prefix().items()}
    assert layout['class_predictor.weight'][0] == 3 and layout['mask.mask.bias'] == (2,)


def test_reset_class_mapping_by_dict_and_errors():
    net = small_net(classes=('person', 'car', 'dog'))
    old = class_rows(net)
    net.reset_class(['puppy'], reuse_weights={'puppy': 'dog'})
    np.testing.assert_array_equal(class_rows(net)['box_w'], old['box_w'][8:12])
    net = small_net(classes=('person', 'car', 'dog'))
    net.reset_class(['x', 'y'], reuse_weights={1: 0})  # by index
    np.testing.assert_array_equal(class_rows(net)['mask_w'][1], old['mask_w'][0])
    with pytest.raises(ValueError, match="'horse' is not one of the original classes"):
        small_net(classes=('person',)).reset_class(['horse'], reuse_weights=['horse'])
    with pytest.raises(ValueError, match='duplicate class names'):
        small_net().reset_class(['a', 'a'])
    uninitialized = mask_rcnn(18, 'v1b', fpn=True, classes=('a', 'b'), **SMALL)
    with pytest.raises(ValueError, match='needs initialised'):
        uninitialized.reset_class(['a'], reuse_weights=True)
    uninitialized.reset_class(['q'])  # without reuse: left for initialize()
    assert uninitialized.class_predictor.weight.shape[0] == 2


def test_get_model_with_other_classes_loads_the_file_then_replaces_class_layers(
        tmp_path, monkeypatch):
    name = 'mask_rcnn_resnet18_v1b_coco'
    source = gluonseg.get_model(name, pretrained_base=False)
    for block in (source.class_predictor, source.mask.mask):
        block.bias.set_data(mx.nd.random.normal(shape=block.bias.shape))
    path = str(tmp_path / 'published.params')
    source.save_parameters(path)
    monkeypatch.setattr(model_info(name), 'weights', [Weights(None, path=path)])
    old = class_rows(source)
    dog, person = source.classes.index('dog'), source.classes.index('person')
    net = gluonseg.get_model(name, pretrained=True, classes=['dog', 'unicorn', 'person'],
                             reuse_weights=True)
    new = class_rows(net)
    assert net.classes == ('dog', 'unicorn', 'person')
    assert new['cls_w'].shape[0] == 4 and new['box_w'].shape[0] == 12
    np.testing.assert_array_equal(new['cls_w'][[0, 1, 3]], old['cls_w'][[0, dog + 1,
                                                                         person + 1]])
    np.testing.assert_array_equal(new['mask_b'][[0, 2]], old['mask_b'][[dog, person]])
    # backbone and RPN are the file's
    np.testing.assert_array_equal(net.rpn.score.weight.data().asnumpy(),
                                  source.rpn.score.weight.data().asnumpy())
    np.testing.assert_array_equal(net.features[5][0].conv1.weight.data().asnumpy(),
                                  source.features[5][0].conv1.weight.data().asnumpy())
    fresh = gluonseg.get_model(name, pretrained=True, classes=['unicorn'])
    assert class_rows(fresh)['cls_w'].shape[0] == 2
    with pytest.raises(ValueError, match='reuse_weights needs pretrained=True'):
        gluonseg.get_model(name, pretrained_base=False, classes=['a'], reuse_weights=True)
