"""The dataset catalog (gluonseg/data/catalog.py) and the places that read it."""
import pytest

from gluonseg.data import catalog
from gluonseg.engine.data import dataset_short_name, get_segmentation_dataset
from gluonseg.model_zoo import weights_table
from gluonseg.tools.evaluate import palette_of
from gluonseg.utils import viz


def test_class_names_match_the_class_count_and_the_palette():
    for name, info in catalog.DATASETS.items():
        names = catalog.class_names(name)
        if info.classes:
            assert len(names) == info.num_classes, name
            assert len(viz.get_palette(info.palette)) >= len(names), name
        else:
            assert names == (), name
    assert catalog.class_names('voc')[15] == 'person'
    assert catalog.class_names('citys')[0] == 'road' and catalog.class_names('ade')[0] == 'wall'


def test_every_segmentation_dataset_has_a_loader_and_a_model_suffix():
    suffixes = set(weights_table.SEMANTIC_DEPTHS)
    for name in catalog.SEGMENTATION_DATASETS:
        assert isinstance(catalog.loader_class(name), type), name
        assert catalog.dataset_info(name).model_suffix in suffixes, name
    assert dataset_short_name('voc_aug') == 'voc' and dataset_short_name('folder') == 'voc'
    for suffix in suffixes:  # a model name's dataset part gives back its dataset
        assert catalog.dataset_of_model_suffix(suffix) == suffix
    assert catalog.dataset_of_model_suffix('v1b') is None


def test_palettes_of_datasets():
    assert [palette_of(d) for d in ('voc', 'voc_aug', 'coco', 'shapes', 'folder', 'ade',
                                    'citys')] == ['voc'] * 5 + ['ade20k', 'cityscapes']
    assert set(info.palette for info in catalog.DATASETS.values()) <= set(viz.PALETTE_NAMES)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown dataset 'vocc'; choose one of .*voc_aug"):
        catalog.dataset_info('vocc')
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'; choose one of ade"):
        get_segmentation_dataset('imagenet')  # in the catalog, but not a segmentation set
    with pytest.raises(ValueError, match='no reader of the ImageNet dataset'):
        catalog.loader_class('imagenet')


def test_a_missing_module_is_named_and_an_import_error_inside_one_is_not_hidden(tmp_path,
                                                                               monkeypatch):
    with pytest.raises(ValueError, match='this gluonseg has no module gluonseg.data.nothing'):
        catalog.resolve('gluonseg.data.nothing:Reader')
    (tmp_path / 'broken_reader_for_test.py').write_text('import no_such_dependency_xyz\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match='no_such_dependency_xyz'):
        catalog.resolve('broken_reader_for_test:Reader')
