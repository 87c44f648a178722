"""The weights table (gluonseg/model_zoo/weights_table.py): its records, its measured sizes,
and a registry that lists models from it without MXNet or model files."""
import re

import numpy as np
import pytest

from gluonseg.data.catalog import DATASETS, resolve
from gluonseg.model_zoo import weights_table
from gluonseg.model_zoo.registry import model_info, register_model
from gluonseg.tools.predict import predict_labels, resize_rule
from test_cli import run_fresh
from test_docs import load_script

RECORD_KEYS = {'task', 'dataset', 'architecture', 'builder', 'kwargs', 'mean', 'std', 'resize'}


def test_every_model_record_is_complete():
    assert len(weights_table.MODELS) == 126
    for name, record in weights_table.MODELS.items():
        assert set(record) == RECORD_KEYS, name
        assert record['task'] in weights_table.RESIZE_RULES, name
        assert record['resize'] == weights_table.RESIZE_RULES[record['task']], name
        assert record['dataset'] in DATASETS, name
        assert re.fullmatch(r'gluonseg(\.\w+)+:\w+', record['builder']), name
        assert len(record['mean']) == len(record['std']) == 3, name
        assert all(0 < s < 1 for s in record['std']), name


def test_every_weight_file_is_a_distinct_published_file_with_its_measured_size():
    sha1s = []
    for name, files in weights_table.WEIGHTS.items():
        assert name in weights_table.MODELS, name
        for row in files:
            assert re.fullmatch(r'[0-9a-f]{40}', row['sha1']), name
            assert row['source'] and set(row) <= {'sha1', 'metrics', 'source', 'protocol'}
            assert all(0 < value <= 100 for value in row['metrics'].values()), name
            sha1s.append(row['sha1'])
    assert len(sha1s) == len(set(sha1s)) == 45
    assert set(weights_table.COST) == set(weights_table.WEIGHTS)


def test_the_table_names_what_the_builders_can_build():
    from gluonseg.model_zoo.rcnn.mask_rcnn import MASK_RCNN_CONFIGS
    from gluonseg.model_zoo.resnetv1b import RESNET_SPECS, RESNET_VARIANTS
    assert set(weights_table.RESNET_DEPTHS) == set(RESNET_SPECS)
    assert set(weights_table.RESNET_VARIANTS) == set(RESNET_VARIANTS)
    assert set(weights_table.MASK_RCNN_MODELS) == set(MASK_RCNN_CONFIGS)


def test_every_builder_reference_names_a_callable():
    for reference in {record['builder'] for record in weights_table.MODELS.values()}:
        assert callable(resolve(reference)), reference


def test_a_protocol_comes_with_the_metrics_it_describes():
    assert model_info('psp_resnet101_citys').weights[0].protocol == \
        'Cityscapes val; multi-scale + flip'
    assert model_info('mask_rcnn_resnet18_v1b_coco').weights[0].protocol == \
        'COCO val2017, single scale 800/1333'
    assert model_info('deeplab_resnet152_coco').weights[0].protocol == ''  # no number published
    assert model_info('resnet50_v1s').weights[0].protocol == ''


# One model per builder, the smallest: a fresh count must equal the table's numbers.
@pytest.mark.parametrize('name', ['resnet18_v1b', 'fcn_resnet50_ade', 'psp_resnet50_ade',
                                  'deeplab_resnet50_citys', 'mask_rcnn_resnet18_v1b_coco',
                                  'mask_rcnn_fpn_resnet18_v1b_coco'])
def test_measured_size_in_the_table_equals_a_fresh_count(name):
    script = load_script('scripts/update_model_tables.py')
    assert script.measure(name) == weights_table.COST[name], \
        'stale COST: run python scripts/update_model_tables.py --measure'


def test_parameter_count_of_resnet50_is_the_known_one():
    # 25.557 M learned values: ResNet-50 v1b as in He et al. (torchvision's resnet50 too).
    assert weights_table.COST['resnet50_v1b'][0] == 25557032


def test_cost_block_round_trips(tmp_path, monkeypatch):
    script = load_script('scripts/update_model_tables.py')
    copy = tmp_path / 'weights_table.py'
    with open(script.TABLE_MODULE) as f:
        copy.write_text(f.read())
    monkeypatch.setattr(script, 'TABLE_MODULE', str(copy))
    assert not script.write_cost(dict(weights_table.COST))  # unchanged
    assert script.write_cost({'resnet18_v1b': (1, 2.5)})
    text = copy.read_text()
    assert "COST = {\n    'resnet18_v1b': (1, 2.5),\n}\n# </generated>" in text


LISTING = r"""
import json, sys
from gluonseg.model_zoo.registry import get_model, list_models, model_info, similar_names
entry = model_info('deeplab_resnet101_voc')
seen = {'names': len(list_models()), 'close': similar_names('psp_resnet101_vocc')[:1],
        'classes': entry.classes[15], 'resize': model_info('mask_rcnn_resnet18_v1b_coco').resize,
        'mxnet': 'mxnet' in sys.modules,
        'model files': sorted(m for m in sys.modules if m.startswith('gluonseg.model_zoo.')
                              and not m.endswith(('.registry', '.weights_table')))}
get_model('fcn_resnet18_shapes', pretrained_base=False)
seen['built'] = sorted(m for m in sys.modules if m.startswith('gluonseg.model_zoo.'))
print(json.dumps(seen))
"""


def test_listing_imports_no_model_file_and_building_imports_only_its_own():
    seen = run_fresh(LISTING)
    assert seen['names'] == 126 and seen['close'] == ['psp_resnet101_voc']
    assert seen['classes'] == 'person' and seen['resize'] == {'short': 800, 'max_size': 1333}
    assert seen['mxnet'] is False and seen['model files'] == []
    assert 'gluonseg.model_zoo.fcn' in seen['built']
    assert not {'gluonseg.model_zoo.pspnet', 'gluonseg.model_zoo.deeplabv3',
                'gluonseg.model_zoo.rcnn'} & set(seen['built'])


class RecordingNet:
    """Stands for a semantic network: predicts class 1 everywhere, records the input size."""

    def __init__(self, info):
        self.gluonseg_info = info
        self.seen = []

    def predict(self, image):
        self.seen.append(image.shape[:2])
        return np.ones(image.shape[:2], np.int32)


def test_predict_resizes_as_the_model_record_says():
    assert resize_rule(RecordingNet(model_info('fcn_resnet18_shapes'))) == {}
    image = np.zeros((48, 96, 3), np.uint8)
    published = RecordingNet(model_info('fcn_resnet18_shapes'))
    assert predict_labels(published, image).shape == (48, 96)
    assert published.seen == [(48, 96)]  # semantic: at the image's own size

    @register_model('shapes_at_24_for_test', task='semantic', dataset='shapes',
                    classes=('bg', 'disc'), resize={'short': 24})
    def builder(**kwargs):
        raise AssertionError('not built here')
    try:
        small = RecordingNet(model_info('shapes_at_24_for_test'))
        labels = predict_labels(small, image)
        assert small.seen == [(24, 48)] and labels.shape == (48, 96)  # back at image size
        predict_labels(small, image, short=12)  # the caller's size wins
        assert small.seen[-1] == (12, 24)
    finally:
        from gluonseg.model_zoo import registry
        registry._REGISTRY.pop('shapes_at_24_for_test')
