"""The registry: names, wildcards, metadata, errors, and pretrained loading end to end."""
import io
import zipfile

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.model_zoo import registry
from gluonseg.model_zoo.registry import UnknownModelError, model_info, register_weights
from gluonseg.utils.download import sha1_file


@pytest.fixture
def restore_weights():
    """Undo register_weights() calls made by a test."""
    saved = {name: list(entry.weights) for name, entry in registry._REGISTRY.items()}
    yield
    for name, weights in saved.items():
        registry._REGISTRY[name].weights[:] = weights


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv('GLUONSEG_HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet'))
    for var in ('GLUONSEG_REPO_URL', 'MXNET_GLUON_REPO'):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_wildcards_and_pretrained_filter():
    deeplab = gluonseg.list_models('deeplab_*')
    assert deeplab and all(n.startswith('deeplab_') for n in deeplab)
    assert deeplab == sorted(deeplab)
    published = gluonseg.list_models(pretrained=True)
    assert 'deeplab_resnet152_voc' in published and 'fcn_resnet50_voc' not in published
    assert 'fcn_resnet50_voc' in gluonseg.list_models(pretrained=False)
    assert gluonseg.list_models('*_citys', pretrained=True) == [
        'danet_resnet101_citys', 'danet_resnet50_citys', 'deeplab_resnet101_citys',
        'deeplab_resnet50_citys', 'deeplab_v3b_plus_wideresnet_citys', 'fastscnn_citys',
        'icnet_resnet50_citys', 'psp_resnet101_citys']
    assert set(gluonseg.list_models(task='classification')) >= {'resnet50_v1s', 'resnet18_v1b'}


def test_every_semantic_combination_is_registered_with_its_class_count():
    counts = {'voc': 21, 'coco': 21, 'ade': 150, 'citys': 19}
    for method in ('fcn', 'psp', 'deeplab'):
        for depth in (50, 101, 152):
            for dataset, nclass in counts.items():
                entry = model_info('%s_resnet%d_%s' % (method, depth, dataset))
                assert entry.num_classes == nclass == len(entry.classes)
                assert entry.task == 'semantic'


def test_headline_model_metadata():
    entry = model_info('deeplab_resnet152_voc')
    weights = entry.weights[0]
    assert weights.metrics == {'mIoU': 86.7}
    assert 'test server' in weights.protocol and 'multi-scale' in weights.protocol
    assert weights.sha1 == 'd35bea8817935d1ab310ef1e6dd06bb18c2d5f0d'
    assert entry.classes[15] == 'person'
    assert entry.mean == (0.485, 0.456, 0.406)


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match='deeplab_resnet101_voc'):
        gluonseg.get_model('deeplab_resnet101_vocc')
    with pytest.raises(UnknownModelError, match='list_models'):
        gluonseg.get_model('nothing_like_it_at_all')


def test_similar_names_of_a_misspelled_name_or_word():
    assert registry.similar_names('psp_resnet101_vocc')[0] == 'psp_resnet101_voc'
    assert registry.similar_names('shapez') == []  # no whole name is close
    assert registry.similar_names('shapez', words=True)[0] == 'shapes'
    assert registry.similar_names('cityz', words=True)[0] == 'citys'
    assert registry.similar_names('qqqqqqqq', words=True) == []


def test_pretrained_without_published_weights_says_so():
    with pytest.raises(ValueError, match='No pretrained weights are published for'):
        gluonseg.get_model('fcn_resnet50_voc', pretrained=True)


def test_register_model_decorator_and_duplicate_name():
    @gluonseg.register_model(task='semantic', dataset='toy', classes=('a', 'b'))
    def toy_fcn_for_test(**kwargs):
        kwargs.pop('pretrained_base'), kwargs.pop('root')
        return gluonseg.model_zoo.fcn.FCN(2, backbone='resnet18', pretrained_base=False)
    try:
        net = gluonseg.get_model('toy_fcn_for_test')
        assert net(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 2, 32, 32)
        assert 'toy_fcn_for_test' in gluonseg.list_models('toy_*')
        with pytest.raises(ValueError, match='already registered'):
            gluonseg.register_model('toy_fcn_for_test', task='semantic', dataset='toy',
                                    classes=('a',))(toy_fcn_for_test)
    finally:
        registry._REGISTRY.pop('toy_fcn_for_test', None)


def _trained_like_net(name):
    mx.random.seed(3)
    net = gluonseg.get_model(name, pretrained_base=False)
    for param in net.collect_params().values():  # make every array distinctive
        param.set_data(mx.nd.random.normal(shape=param.shape) * 0.1 +
                       (1.0 if param.name.endswith('var') else 0.0))
    return net


def test_local_weight_file_loads_and_a_sha1_prefix_pins_it(tmp_path, restore_weights,
                                                           isolated_home):
    net = _trained_like_net('fcn_resnet18_shapes')
    path = str(tmp_path / 'mine.params')
    net.save_parameters(path)
    sha1 = sha1_file(path)
    register_weights('fcn_resnet18_shapes', sha1=sha1, path=path)
    x = mx.nd.random.normal(shape=(1, 3, 40, 48))
    for pretrained in (True, sha1[:6]):
        loaded = gluonseg.get_model('fcn_resnet18_shapes', pretrained=pretrained)
        np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-5)
    with pytest.raises(ValueError, match='matches 0 of the weight files'):
        gluonseg.get_model('fcn_resnet18_shapes', pretrained='ffffffff')


def test_mismatched_file_names_every_problem(tmp_path, restore_weights):
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False)
    params = {k: p.data() for k, p in net._collect_params_with_prefix().items()}
    params.pop('head.block.4.bias')
    params['head.block.4.weight'] = mx.nd.zeros((7, 128, 1, 1))
    params['extra.weight'] = mx.nd.zeros((1,))
    path = str(tmp_path / 'bad.params')
    mx.nd.save(path, params)
    with pytest.raises(ValueError) as err:
        registry.load_weights(net, path)
    message = str(err.value)
    assert 'bad.params' in message
    assert 'head.block.4.bias' in message and 'extra.weight' in message
    assert 'head.block.4.weight: file (7, 128, 1, 1), model (4, 128, 1, 1)' in message


def test_pretrained_download_from_a_local_mirror_end_to_end(file_server, tmp_path,
                                                            restore_weights, isolated_home,
                                                            monkeypatch):
    name = 'deeplab_resnet18_shapes'
    net = _trained_like_net(name)
    path = str(tmp_path / 'published.params')
    net.save_parameters(path)
    sha1 = sha1_file(path)
    stem = '%s-%s' % (name, sha1[:8])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.write(path, stem + '.params')
    file_server.add('/gluon/models/%s.zip' % stem, archive.getvalue())
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    register_weights(name, sha1=sha1)  # published-store record, like GluonCV's files

    loaded = gluonseg.get_model(name, pretrained=True)
    x = mx.nd.random.normal(shape=(1, 3, 33, 47))
    np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-5)
    cached = tmp_path / 'home' / 'models' / (stem + '.params')
    assert cached.exists() and sha1_file(str(cached)) == sha1
    # A second call is served from the cache.
    gluonseg.get_model(name, pretrained=True)
    assert len(file_server.requests_for('/gluon/models/%s.zip' % stem)) == 1


def test_pretrained_base_loads_imagenet_weights_into_the_dilated_backbone(tmp_path,
                                                                          restore_weights):
    backbone = _trained_like_net('resnet18_v1b')
    path = str(tmp_path / 'resnet18_v1b.params')
    backbone.save_parameters(path)
    register_weights('resnet18_v1b', sha1=sha1_file(path), path=path)
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=True)
    np.testing.assert_array_equal(net.layer4[1].conv2.weight.data().asnumpy(),
                                  backbone.layer4[1].conv2.weight.data().asnumpy())
    assert net.layer4[1].conv2._kwargs['dilate'] == (4, 4)  # dilated, unlike the classifier
    assert 'fc.weight' not in net._collect_params_with_prefix()
