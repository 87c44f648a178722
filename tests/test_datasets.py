"""On-disk datasets read from tiny copies written in the exact formats (see fixtures_data.py)."""
import os

import numpy as np
import pytest
from PIL import Image

from fixtures_data import write_folder, write_sbd, write_voc
from gluonseg.data import (DatasetNotFoundError, FolderSegmentation, SegmentationTestValTransform,
                           VOCAugSegmentation, VOCSegmentation)
from gluonseg.data.pascal_aug import read_sbd_mat
from gluonseg.data.pascal_voc import VOC_CLASSES

VOC_SPLITS = {'train': ['2007_000001', '2007_000002', '2007_000003'],
              'val': ['2007_000010', '2007_000011'],
              'test': ['2008_000100']}
VOC_SPLITS['trainval'] = VOC_SPLITS['train'] + VOC_SPLITS['val']


@pytest.fixture
def voc(tmp_path):
    # One greyscale and one CMYK JPEG among the train images.
    expected = write_voc(tmp_path, VOC_SPLITS, image_modes={'2007_000002': 'L', '2007_000003': 'CMYK'})
    return tmp_path, expected


def assert_sample(sample, expected):
    image, mask = sample
    exp_image, exp_mask = expected
    assert image.dtype == np.uint8 and image.shape == exp_image.shape and image.shape[2] == 3
    assert np.array_equal(image, exp_image)
    assert mask.dtype == np.int32 and np.array_equal(mask, exp_mask)


def test_voc_reads_images_and_palette_indices(voc):
    root, expected = voc
    ds = VOCSegmentation(str(root), split='train')
    assert ds.ids == VOC_SPLITS['train'] and len(ds) == 3
    assert ds.num_class == 21 and ds.classes == list(VOC_CLASSES) and ds.ignore_index == 255
    for i, image_id in enumerate(ds.ids):
        assert_sample(ds[i], expected[image_id])
    image, mask = ds[0]
    assert (mask == 255).sum() > 0 and mask.max() == 255  # VOC borders kept as the ignore label
    assert set(np.unique(mask[1:-1, 1:-1])) <= set(range(21))


def test_voc_greyscale_and_cmyk_jpegs_become_rgb(voc):
    root, expected = voc
    ds = VOCSegmentation(str(root), split='train')
    grey, _ = ds[1]
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    cmyk, _ = ds[2]
    # PIL's CMYK round trip: the decoded colours stay close to the RGB that was encoded.
    from fixtures_data import make_image
    original = make_image(cmyk.shape[0], cmyk.shape[1], 2)
    assert np.abs(cmyk.astype(int) - original).mean() < 12


def test_voc_train_is_not_trainval_and_test_has_no_masks(voc):
    root, expected = voc
    train = VOCSegmentation(str(root), 'train')
    val = VOCSegmentation(str(root), 'val')
    trainval = VOCSegmentation(str(root), 'trainval')
    assert not set(train.ids) & set(val.ids)
    assert trainval.ids == VOC_SPLITS['trainval']
    test = VOCSegmentation(str(root), 'test', transform=SegmentationTestValTransform())
    assert test.ids == ['2008_000100']
    sample = test[0]
    assert isinstance(sample, np.ndarray) and sample.shape[0] == 3  # the image alone, transformed
    raw = VOCSegmentation(str(root), 'test')[0]
    assert np.array_equal(raw, expected['2008_000100'][0])


def test_voc_accepts_root_at_vocdevkit_or_voc2012(voc):
    root, _ = voc
    for sub in ('VOCdevkit', os.path.join('VOCdevkit', 'VOC2012')):
        assert VOCSegmentation(str(root / sub), 'val').ids == VOC_SPLITS['val']


def test_voc_transform_is_applied_to_image_and_mask(voc):
    root, expected = voc
    calls = []

    def transform(image, mask):
        calls.append((image.shape, mask.shape))
        return image[:4], mask[:4] + 1

    image, mask = VOCSegmentation(str(root), 'val', transform=transform)[1]
    exp_image, exp_mask = expected['2007_000011']
    assert calls == [(exp_image.shape, exp_mask.shape)]
    assert np.array_equal(mask, exp_mask[:4] + 1) and image.shape[0] == 4


def test_missing_root_error_names_path_and_script(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as info:
        VOCSegmentation(str(tmp_path / 'nowhere'))
    message = str(info.value)
    assert os.path.join('nowhere', 'VOCdevkit', 'VOC2012') in message
    assert 'scripts/datasets/prepare_voc.py' in message
    assert isinstance(info.value, FileNotFoundError)
    # The default root is $GLUONSEG_HOME/datasets/voc.
    monkeypatch.setenv('GLUONSEG_HOME', str(tmp_path / 'home'))
    with pytest.raises(FileNotFoundError, match=r'home.datasets.voc'):
        VOCSegmentation()
    with pytest.raises(FileNotFoundError, match=r'prepare_sbd\.py'):
        VOCAugSegmentation(str(tmp_path), 'train')


def test_missing_listed_file_and_bad_split(voc):
    root, _ = voc
    os.remove(str(root / 'VOCdevkit' / 'VOC2012' / 'SegmentationClass' / '2007_000011.png'))
    with pytest.raises(DatasetNotFoundError, match=r'2007_000011\.png'):
        VOCSegmentation(str(root), 'val')
    with pytest.raises(ValueError, match="unknown VOC split 'training'"):
        VOCSegmentation(str(root), 'training')


def test_label_png_in_rgb_is_refused(voc):
    root, _ = voc
    path = str(root / 'VOCdevkit' / 'VOC2012' / 'SegmentationClass' / '2007_000010.png')
    Image.open(path).convert('RGB').save(path)
    with pytest.raises(ValueError, match=r"2007_000010\.png has PIL mode 'RGB'"):
        VOCSegmentation(str(root), 'val')[0]


# --------------------------------------------------------------------------- SBD / VOC Aug
SBD_TRAIN = ['2008_000001', '2008_000002', '2007_000010', '2007_000001']  # two also in VOC (val, train)
SBD_VAL = ['2008_000003', '2007_000011']                                  # one also in VOC val


@pytest.fixture
def aug(voc):
    root, voc_expected = voc
    sbd_expected = write_sbd(root, SBD_TRAIN, SBD_VAL)
    return root, voc_expected, sbd_expected


def test_sbd_mat_mask_roundtrip(aug):
    root, _, sbd_expected = aug
    mask = read_sbd_mat(str(root / 'benchmark_RELEASE' / 'dataset' / 'cls' / '2008_000002.mat'))
    assert mask.dtype == np.int32 and np.array_equal(mask, sbd_expected['2008_000002'][1])


def test_sbd_own_splits(aug):
    root, _, sbd_expected = aug
    train = VOCAugSegmentation(str(root), 'train')
    val = VOCAugSegmentation(str(root), 'val')
    assert train.ids == SBD_TRAIN and val.ids == SBD_VAL
    for ds in (train, val):
        for i, image_id in enumerate(ds.ids):
            assert_sample(ds[i], sbd_expected[image_id])
    assert VOCAugSegmentation(str(root), 'gluoncv_train').ids == SBD_TRAIN + SBD_VAL


def test_train_aug_is_sbd_trainval_plus_voc_train_minus_voc_val(aug):
    root, voc_expected, sbd_expected = aug
    ds = VOCAugSegmentation(str(root), 'train_aug')
    expected_ids = sorted((set(SBD_TRAIN) | set(SBD_VAL) | set(VOC_SPLITS['train'])) - set(VOC_SPLITS['val']))
    assert ds.ids == expected_ids
    assert '2007_000010' not in ds.ids and '2007_000011' not in ds.ids  # VOC val, even though in SBD
    assert '2007_000002' in ds.ids and '2007_000003' in ds.ids          # VOC train only
    for i, image_id in enumerate(ds.ids):
        # SBD's mask when SBD has the image, VOC's PNG (with 255 borders) otherwise.
        source = sbd_expected if image_id in sbd_expected else voc_expected
        assert_sample(ds[i], source[image_id])
    assert ds[ds.ids.index('2007_000002')][1].max() == 255
    assert ds.image_paths[ds.ids.index('2007_000001')].endswith(os.path.join('dataset', 'img', '2007_000001.jpg'))


def test_sbd_root_forms_and_voc_root(aug, tmp_path):
    root, _, _ = aug
    for sub in ('benchmark_RELEASE', os.path.join('benchmark_RELEASE', 'dataset')):
        assert VOCAugSegmentation(str(root / sub), 'val').ids == SBD_VAL
        # VOC is found next to benchmark_RELEASE for train_aug
        assert len(VOCAugSegmentation(str(root / sub), 'train_aug')) == 6
    explicit = VOCAugSegmentation(str(root), 'train_aug', voc_root=str(root / 'VOCdevkit'))
    assert len(explicit) == 6


def test_train_aug_without_voc_names_what_is_missing(tmp_path):
    write_sbd(tmp_path, SBD_TRAIN, SBD_VAL)
    assert len(VOCAugSegmentation(str(tmp_path), 'train')) == 4  # SBD splits do not need VOC
    with pytest.raises(DatasetNotFoundError, match=r'VOCdevkit.VOC2012.JPEGImages.*prepare_voc\.py'):
        VOCAugSegmentation(str(tmp_path), 'train_aug')


def test_sbd_mat_without_gtcls_is_named(aug):
    import scipy.io
    root, _, _ = aug
    path = str(root / 'benchmark_RELEASE' / 'dataset' / 'cls' / '2008_000003.mat')
    scipy.io.savemat(path, {'GTinst': {'Segmentation': np.zeros((2, 2))}})
    with pytest.raises(KeyError, match=r'2008_000003\.mat has no variable GTcls \(found: GTinst\)'):
        VOCAugSegmentation(str(root), 'val')[0]


# --------------------------------------------------------------------------- folder
def test_folder_dataset_reads_pairs_classes_and_splits(tmp_path):
    expected = write_folder(tmp_path, ['a', 'b', 'c'], splits={'train': ['c', 'a'], 'val': ['b']})
    ds = FolderSegmentation(str(tmp_path))
    assert ds.ids == ['a', 'b', 'c'] and ds.classes == ['background', 'cat', 'dog'] and ds.num_class == 3
    for i, stem in enumerate(ds.ids):
        assert_sample(ds[i], expected[stem])
    train = FolderSegmentation(str(tmp_path), split='train')
    assert train.ids == ['c', 'a']
    assert_sample(train[0], expected['c'])
    assert ds.verify() == 3
    override = FolderSegmentation(str(tmp_path), classes=['bg', 'x', 'y', 'z'])
    assert override.num_class == 4


def test_folder_palette_labels_and_jpeg_images(tmp_path):
    expected = write_folder(tmp_path, ['p'], label_mode='P', image_ext='.jpg')
    ds = FolderSegmentation(str(tmp_path))
    assert_sample(ds[0], expected['p'])


def test_folder_bad_label_value_names_file_and_value(tmp_path):
    write_folder(tmp_path, ['good', 'bad'], classes=('background', 'object'))
    path = tmp_path / 'labels' / 'bad.png'
    mask = np.array(Image.open(str(path)))
    mask[5, 5] = 7  # 2 classes: 7 is neither a class id nor the ignore value 255
    Image.fromarray(mask).save(str(path))
    ds = FolderSegmentation(str(tmp_path))
    assert ds[ds.ids.index('good')][1].max() == 255  # ignore is fine
    with pytest.raises(ValueError, match=r'bad\.png: label value\(s\) \[7\] outside \[0, 2\)'):
        ds[ds.ids.index('bad')]
    with pytest.raises(ValueError, match=r'bad\.png'):
        ds.verify()


def test_folder_missing_pieces_are_named(tmp_path):
    write_folder(tmp_path, ['a', 'b'])
    os.remove(str(tmp_path / 'labels' / 'b.png'))
    with pytest.raises(ValueError, match=r'1 image\(s\) .* have no label .* b'):
        FolderSegmentation(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'b\.png'):
        with open(str(tmp_path / 'val.txt'), 'w') as f:
            f.write('b\n')
        FolderSegmentation(str(tmp_path), split='val')
    with pytest.raises(FileNotFoundError, match=r'nope\.txt'):
        FolderSegmentation(str(tmp_path), split='nope')
    os.remove(str(tmp_path / 'classes.txt'))
    with pytest.raises(FileNotFoundError, match=r'classes\.txt'):
        FolderSegmentation(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'images'):
        FolderSegmentation(str(tmp_path / 'empty'), classes=['a'])


def test_folder_image_and_label_size_mismatch(tmp_path):
    write_folder(tmp_path, ['a'])
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(str(tmp_path / 'labels' / 'a.png'))
    both = r'labels/a\.png: label is 5x5 but its image .*images/a\.png is 16x20'
    with pytest.raises(ValueError, match=both):
        FolderSegmentation(str(tmp_path))[0]
    with pytest.raises(ValueError, match=both):
        FolderSegmentation(str(tmp_path)).verify()
