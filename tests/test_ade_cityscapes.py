"""ADE20KSegmentation and CitySegmentation on tiny copies of their release layouts."""
import os

import numpy as np
import pytest
from PIL import Image

from fixtures_data import write_ade20k, write_cityscapes
from gluonseg.data import DatasetNotFoundError
from gluonseg.data.ade20k import ADE20KSegmentation
from gluonseg.data.cityscapes import CitySegmentation
from gluonseg.engine.data import get_segmentation_dataset

ADE_SPLITS = {'training': ['ADE_train_00000001', 'ADE_train_00000002'], 'validation': ['ADE_val_00000001']}
# Cityscapes labelIds of the 19 evaluated classes, in train-id order (cityscapesScripts' table).
EVALUATED_LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
CITY_SPLITS = {'train': {'bochum': ['bochum_000000_000313'],
                         'aachen': ['aachen_000000_000019', 'aachen_000001_000019']},
               'val': {'frankfurt': ['frankfurt_000000_000294']},
               'test': {'berlin': ['berlin_000000_000019']}}


@pytest.fixture
def ade(tmp_path):
    return tmp_path, write_ade20k(tmp_path, ADE_SPLITS, image_modes={'ADE_train_00000002': 'L'})


@pytest.fixture
def city(tmp_path):
    return tmp_path, write_cityscapes(tmp_path, CITY_SPLITS)


def ade_expected(raw):
    out = raw.astype(np.int32) - 1
    out[raw == 0] = 255
    return out


def city_expected(raw):
    out = np.full(raw.shape, 255, dtype=np.int32)
    for train_id, label_id in enumerate(EVALUATED_LABEL_IDS):
        out[raw == label_id] = train_id
    return out


def test_ade20k_reads_label_minus_one_with_other_ignored(ade):
    root, expected = ade
    data = ADE20KSegmentation(str(root), 'train')
    assert data.ids == ADE_SPLITS['training'] and data.num_class == 150 and data.classes[0] == 'wall'
    for index, stem in enumerate(data.ids):
        image, mask = data[index]
        assert image.shape[2] == 3 and np.array_equal(image, expected[stem][0])  # incl. the greyscale JPEG
        assert mask.dtype == np.int32 and np.array_equal(mask, ade_expected(expected[stem][1]))
        assert mask[0, :3].tolist() == [255, 0, 149]  # raw 0 (other), 1 (wall), 150 (flag)
    assert ADE20KSegmentation(str(root), 'val').ids == ADE_SPLITS['validation']
    assert len(ADE20KSegmentation(str(root / 'ADEChallengeData2016'), 'trainval')) == 3
    via_engine = get_segmentation_dataset('ade', split='val', root=str(root))
    assert isinstance(via_engine, ADE20KSegmentation) and len(via_engine) == 1


def test_ade20k_errors_name_the_file(ade, tmp_path_factory):
    root, _ = ade
    empty = tmp_path_factory.mktemp('empty')
    with pytest.raises(DatasetNotFoundError, match='ADEChallengeData2016.zip') as err:
        ADE20KSegmentation(str(empty), 'train')
    assert os.path.join(str(empty), 'ADEChallengeData2016', 'images', 'training') in str(err.value)
    with pytest.raises(ValueError, match='unknown ADE20K split'):
        ADE20KSegmentation(str(root), 'test')
    label = root / 'ADEChallengeData2016' / 'annotations' / 'validation' / 'ADE_val_00000001.png'
    with Image.open(str(label)) as png:
        width, height = png.size
    Image.fromarray(np.full((height, width), 200, dtype=np.uint8), mode='L').save(str(label))
    with pytest.raises(ValueError, match=r'ADE_val_00000001\.png.*\[199\]'):
        ADE20KSegmentation(str(root), 'val')[0]
    label.unlink()
    with pytest.raises(DatasetNotFoundError, match='ADE_val_00000001.png'):
        ADE20KSegmentation(str(root), 'val')


def test_cityscapes_maps_label_ids_to_train_ids(city):
    root, expected = city
    data = CitySegmentation(str(root), 'train')
    assert data.ids == ['aachen_000000_000019', 'aachen_000001_000019', 'bochum_000000_000313']
    assert data.num_class == 19 and data.classes[-1] == 'bicycle'
    for index, stem in enumerate(data.ids):
        image, mask = data[index]
        assert np.array_equal(image, expected[stem][0])
        assert np.array_equal(mask, city_expected(expected[stem][1]))
        assert mask[0, :4].tolist() == [255, 0, 18, 18]  # unlabeled, road, bicycle, bicycle
        assert set(np.unique(mask)) <= set(range(19)) | {255}
    assert len(CitySegmentation(str(root), 'trainval')) == 4
    test = CitySegmentation(str(root), 'test')
    image = test[0]  # unlabeled: the image alone
    assert isinstance(image, np.ndarray) and image.shape == (16, 32, 3)
    via_engine = get_segmentation_dataset('citys', split='val', root=str(root))
    assert isinstance(via_engine, CitySegmentation) and via_engine.ids == ['frankfurt_000000_000294']


def test_cityscapes_errors_name_the_file(city, tmp_path_factory):
    root, _ = city
    with pytest.raises(DatasetNotFoundError, match='leftImg8bit_trainvaltest.zip'):
        CitySegmentation(str(tmp_path_factory.mktemp('empty')), 'val')
    label = root / 'gtFine' / 'val' / 'frankfurt' / 'frankfurt_000000_000294_gtFine_labelIds.png'
    label.unlink()
    with pytest.raises(DatasetNotFoundError, match='frankfurt_000000_000294_gtFine_labelIds.png'):
        CitySegmentation(str(root), 'val')
