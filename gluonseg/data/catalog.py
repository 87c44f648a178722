"""The datasets gluonseg knows, as data: one :class:`DatasetInfo` per dataset name.

Every place that turns a dataset name into something (the loader of ``gluonseg train
--dataset``, the class names and palette of a legend, the dataset part of model names, the
protocol of published numbers, the dataset a model name is evaluated on) reads this one
table. Importing it imports nothing but the standard library: ``gluonseg models`` and the
commands' help list datasets without MXNet. Loaders and class names are ``'module:NAME'``
references, imported when asked for.

A new dataset is one more :data:`DATASETS` entry (and its loader class).
"""
import importlib
from dataclasses import dataclass
from typing import Optional

__all__ = ['DatasetInfo', 'DATASETS', 'PUBLISHED_SCALES', 'SEGMENTATION_DATASETS', 'dataset_info',
           'dataset_of_model_suffix', 'class_names', 'loader_class', 'resolve']


@dataclass(frozen=True)
class DatasetInfo:
    """What gluonseg knows about one dataset name.

    Attributes
    ----------
    name : str
        The name given to ``--dataset`` and used in the weights table (``'voc_aug'``).
    display_name : str
        How documentation and ``gluonseg models`` call it.
    num_classes : int or None
        Class count (None: the user's folder says it).
    classes : str or None
        ``'module:NAME'`` of the class names, indexed by label (None: no names shipped).
    loader : str or None
        ``'module:Class'`` of its segmentation dataset (None: gluonseg does not read it).
    model_suffix : str
        The dataset part of model names for a model trained on it (``'voc_aug'`` -> ``'voc'``;
        a folder of one's own classes takes the VOC names' architectures).
    palette : str
        The :func:`gluonseg.utils.viz.get_palette` name its masks are drawn with.
    protocol : str
        How published numbers on it were measured ('' where none are published).
    """
    name: str
    display_name: str
    num_classes: Optional[int]
    classes: Optional[str]
    loader: Optional[str]
    model_suffix: str
    palette: str
    protocol: str = ''


# GluonCV's COCO segmentation models predict the 21 VOC classes, hence VOC's names and colours.
DATASETS = {info.name: info for info in (
    DatasetInfo('shapes', 'Shapes (synthetic, built in)', 4, 'gluonseg.data.shapes:SHAPE_CLASSES',
                'gluonseg.data.shapes:ShapesSegmentation', 'shapes', 'voc'),
    DatasetInfo('voc', 'Pascal VOC 2012', 21, 'gluonseg.data.classes:VOC_CLASSES',
                'gluonseg.data.pascal_voc:VOCSegmentation', 'voc', 'voc',
                'VOC2012 test server; COCO -> VOC-Aug -> VOC transfer; multi-scale + flip'),
    DatasetInfo('voc_aug', 'Pascal VOC 2012 + SBD (VOC-Aug)', 21,
                'gluonseg.data.classes:VOC_CLASSES', 'gluonseg.data.pascal_aug:VOCAugSegmentation',
                'voc', 'voc'),
    DatasetInfo('coco', 'MS COCO (21 VOC classes)', 21, 'gluonseg.data.classes:VOC_CLASSES',
                'gluonseg.data.coco:COCOSegmentation', 'coco', 'voc',
                'COCO val2017 mapped to the 21 VOC classes; multi-scale + flip'),
    DatasetInfo('ade', 'ADE20K', 150, 'gluonseg.data.classes:ADE20K_CLASSES',
                'gluonseg.data.ade20k:ADE20KSegmentation', 'ade', 'ade20k',
                'ADE20K val; multi-scale + flip'),
    DatasetInfo('citys', 'Cityscapes', 19, 'gluonseg.data.classes:CITYSCAPES_CLASSES',
                'gluonseg.data.cityscapes:CitySegmentation', 'citys', 'cityscapes',
                'Cityscapes val; multi-scale + flip'),
    DatasetInfo('mhpv1', 'Multi-Human Parsing v1 (MHP-v1)', 19, None, None, 'mhpv1', 'voc',
                'MHP-v1 val'),
    DatasetInfo('folder', 'A folder of images and label PNGs', None, None,
                'gluonseg.data.folder:FolderSegmentation', 'voc', 'voc'),
    DatasetInfo('coco_instance', 'MS COCO 2017', 80,
                'gluonseg.data.classes:COCO_INSTANCE_CLASSES',
                'gluonseg.data.coco_instance:COCOInstance', 'coco', 'ade20k',
                'COCO val2017, single scale 800/1333'),
    DatasetInfo('imagenet', 'ImageNet', 1000, None, None, 'imagenet', 'voc',
                'ImageNet val, single 224 crop'),
)}

# The scales of GluonCV's published multi-scale numbers (each image's long side times
# base_size), with flips.
PUBLISHED_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)

# The datasets of semantic segmentation (``gluonseg train/eval --dataset``).
SEGMENTATION_DATASETS = ('shapes', 'voc', 'voc_aug', 'coco', 'ade', 'citys', 'folder')


def dataset_info(name):
    """The :class:`DatasetInfo` of ``name``; an unknown name lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError('Unknown dataset %r; choose one of %s'
                         % (name, ', '.join(sorted(DATASETS)))) from None


def dataset_of_model_suffix(suffix):
    """The dataset a model named ``..._<suffix>`` was trained on (``'voc'`` -> ``'voc'``),
    None for a suffix that names no dataset."""
    if suffix in SEGMENTATION_DATASETS and DATASETS[suffix].model_suffix == suffix:
        return suffix
    return None


def resolve(reference):
    """The object a ``'module:NAME'`` reference names (imports the module)."""
    module_name, _, attribute = reference.partition(':')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not (module_name + '.').startswith(err.name + '.'):
            raise  # the module exists; something it imports is missing
        raise ValueError('%s: this gluonseg has no module %s' % (reference, module_name)) \
            from None
    if not hasattr(module, attribute):
        raise ValueError('%s: module %s has no %r' % (reference, module_name, attribute))
    return getattr(module, attribute)


def class_names(name):
    """The class names of dataset ``name``, indexed by label (an empty tuple when the dataset
    ships none: ImageNet here, a folder's own ``classes.txt``)."""
    info = dataset_info(name)
    return tuple(resolve(info.classes)) if info.classes else ()


def loader_class(name):
    """The segmentation dataset class of ``name`` (imported now)."""
    info = dataset_info(name)
    if info.loader is None:
        raise ValueError('gluonseg has no reader of the %s dataset (%r)'
                         % (info.display_name, name))
    return resolve(info.loader)
