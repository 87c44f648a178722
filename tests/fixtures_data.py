"""Writers of tiny datasets in the exact on-disk formats the gluonseg datasets read.

Each writer returns what a correct reader must give back: ``{id: (image, mask)}`` with
``image`` the uint8 HxWx3 RGB array PIL decodes from the written file (JPEG is lossy, so this
is the re-read file, not the array that was encoded) and ``mask`` the int32 label array.

Shared by several test modules; import as ``from fixtures_data import write_voc`` (tests/ is on
``sys.path`` under pytest's default rootdir-relative import mode).
"""
import hashlib
import json
import os
import threading

import numpy as np
import scipy.io
from PIL import Image

from gluonseg.utils.viz import voc_palette

__all__ = ['payload', 'sha1_of', 'call_in_threads', 'make_image', 'make_mask', 'write_jpeg', 'write_palette_png', 'write_voc', 'write_sbd',
           'write_folder', 'write_sbd_mat', 'write_coco', 'rle_of', 'write_ade20k', 'write_cityscapes']


def payload(size, seed=0):
    """Deterministic non-repeating bytes (a repeated pattern would hide offset bugs)."""
    out, counter = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(b'%d-%d' % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


def sha1_of(data):
    return hashlib.sha1(data).hexdigest()


def call_in_threads(call, count=3, timeout=30):
    """Run ``call()`` in ``count`` threads at once; returns (results, errors) of the calls."""
    results, errors = [], []

    def run():
        try:
            results.append(call())
        except Exception as err:  # returned to the test
            errors.append(err)
    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results, errors


def make_image(height, width, seed):
    """A smooth-ish RGB test image (large flat blocks keep JPEG error small)."""
    rng = np.random.RandomState(seed)
    coarse = rng.randint(0, 256, size=(-(-height // 8), -(-width // 8), 3)).astype(np.uint8)
    return np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]


def make_mask(height, width, seed, num_class=21, border=True):
    """Blocky int32 class ids in [0, num_class); with ``border``, a 255 frame like VOC's object borders."""
    rng = np.random.RandomState(seed + 1000)
    coarse = rng.randint(0, num_class, size=(-(-height // 6), -(-width // 6)))
    mask = np.kron(coarse, np.ones((6, 6), dtype=np.int64))[:height, :width].astype(np.int32)
    if border:
        mask[0, :] = mask[-1, :] = 255
        mask[:, 0] = mask[:, -1] = 255
    return mask


def write_jpeg(path, image, mode='RGB'):
    """Save ``image`` (uint8 HxWx3 RGB) as a JPEG in PIL ``mode`` ('RGB', 'L' or 'CMYK').

    Returns the RGB array a reader should produce (PIL's decode of the file, converted to RGB).
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).convert(mode).save(path, quality=95)
    with Image.open(path) as img:
        assert img.mode == mode, (path, img.mode)
        return np.asarray(img.convert('RGB')).copy()


def write_palette_png(path, mask):
    """Save class ids as a palette ('P') PNG with the VOC colour map, like SegmentationClass/."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    png = Image.fromarray(mask.astype(np.uint8), mode='P')
    png.putpalette(voc_palette().ravel().tolist())
    png.save(path)


def write_sbd_mat(path, mask):
    """Save a mask the way SBD's cls/<id>.mat holds it: struct GTcls with field Segmentation (+ others)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    boundaries = np.empty((20, 1), dtype=object)  # a MATLAB cell array, one entry per class
    for k in range(20):
        boundaries[k, 0] = np.zeros((1, 1), dtype=np.uint8)
    gt = {'Segmentation': mask.astype(np.uint8), 'Boundaries': boundaries,
          'CategoriesPresent': np.unique(mask[(mask > 0) & (mask < 255)]).astype(np.uint8)}
    scipy.io.savemat(path, {'GTcls': gt})


def _write_split(path, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(i + '\n' for i in ids))


def write_voc(root, splits, size=(20, 28), image_modes=None, seed=0, layout='VOCdevkit/VOC2012',
              unlabeled=('test',)):
    """Write a tiny Pascal VOC 2012 under ``root/<layout>``.

    Parameters
    ----------
    root : str or pathlib.Path
    splits : dict
        Split name -> list of ids (written to ImageSets/Segmentation/<name>.txt). Ids of splits
        in ``unlabeled`` get no SegmentationClass PNG.
    size : (int, int)
        Image height and width (every image gets its own size offset for variety).
    image_modes : dict, optional
        id -> JPEG mode ('L' greyscale, 'CMYK'); default RGB.

    Returns
    -------
    dict
        id -> (image, mask or None), what VOCSegmentation must return.
    """
    base = os.path.join(str(root), layout)
    image_modes = image_modes or {}
    labeled = {i for name, ids in splits.items() if name not in unlabeled for i in ids}
    expected = {}
    for n, image_id in enumerate(sorted({i for ids in splits.values() for i in ids})):
        height, width = size[0] + n % 3, size[1] + n % 5
        image = write_jpeg(os.path.join(base, 'JPEGImages', image_id + '.jpg'),
                           make_image(height, width, seed + n), image_modes.get(image_id, 'RGB'))
        mask = None
        if image_id in labeled:
            mask = make_mask(height, width, seed + n)
            write_palette_png(os.path.join(base, 'SegmentationClass', image_id + '.png'), mask)
        expected[image_id] = (image, mask)
    for name, ids in splits.items():
        _write_split(os.path.join(base, 'ImageSets', 'Segmentation', name + '.txt'), ids)
    return expected


def write_sbd(root, train, val, size=(18, 24), seed=100, layout='benchmark_RELEASE/dataset'):
    """Write a tiny SBD release under ``root/<layout>``: img/*.jpg, cls/*.mat, train.txt, val.txt.

    Returns id -> (image, mask) as VOCAugSegmentation must return them (SBD masks have no 255).
    """
    base = os.path.join(str(root), layout)
    expected = {}
    for n, image_id in enumerate(sorted(set(train) | set(val))):
        height, width = size[0] + n % 4, size[1] + n % 3
        image = write_jpeg(os.path.join(base, 'img', image_id + '.jpg'), make_image(height, width, seed + n))
        mask = make_mask(height, width, seed + n, border=False)
        write_sbd_mat(os.path.join(base, 'cls', image_id + '.mat'), mask)
        expected[image_id] = (image, mask)
    _write_split(os.path.join(base, 'train.txt'), train)
    _write_split(os.path.join(base, 'val.txt'), val)
    return expected


def write_folder(root, stems, classes=('background', 'cat', 'dog'), size=(16, 20), seed=200, splits=None,
                 label_mode='L', image_ext='.png'):
    """Write a FolderSegmentation dataset: images/, labels/ (greyscale PNG ids, 255 borders), classes.txt.

    Returns stem -> (image, mask).
    """
    root = str(root)
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
    os.makedirs(os.path.join(root, 'labels'), exist_ok=True)
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
        f.write(''.join(c + '\n' for c in classes))
    expected = {}
    for n, stem in enumerate(stems):
        image = make_image(size[0], size[1], seed + n)
        mask = make_mask(size[0], size[1], seed + n, num_class=len(classes))
        image_path = os.path.join(root, 'images', stem + image_ext)
        if image_ext == '.png':
            Image.fromarray(image).save(image_path)
        else:
            image = write_jpeg(image_path, image)
        if label_mode == 'P':
            write_palette_png(os.path.join(root, 'labels', stem + '.png'), mask)
        else:
            Image.fromarray(mask.astype(np.uint8), mode=label_mode).save(os.path.join(root, 'labels', stem + '.png'))
        expected[stem] = (image, mask)
    for name, ids in (splits or {}).items():
        _write_split(os.path.join(root, name + '.txt'), ids)
    return expected


def write_coco(root, split, images, categories, annotations):
    """Write a tiny COCO 2017 split: ``root/annotations/instances_<split>2017.json`` + JPEGs.

    Parameters
    ----------
    images : list of dict
        ``{'id', 'height', 'width'}``; file names ``%012d.jpg`` are filled in and the JPEGs written.
    categories : list of (id, name)
    annotations : list of dict
        ``{'image_id', 'category_id', 'segmentation', 'iscrowd'(optional)}``; ids and areas added.

    Returns
    -------
    dict
        image id -> the RGB array a reader should decode from the JPEG.
    """
    root = str(root)
    decoded = {}
    for n, info in enumerate(images):
        info.setdefault('file_name', '%012d.jpg' % info['id'])
        decoded[info['id']] = write_jpeg(os.path.join(root, '%s2017' % split, info['file_name']),
                                         make_image(info['height'], info['width'], 300 + n))
    anns = []
    for n, ann in enumerate(annotations):
        ann = dict(ann)
        ann.setdefault('iscrowd', 0)
        ann.setdefault('area', 1.0)
        ann.setdefault('bbox', [0, 0, 1, 1])
        ann['id'] = n + 1
        anns.append(ann)
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    with open(os.path.join(root, 'annotations', 'instances_%s2017.json' % split), 'w') as f:
        json.dump({'images': images, 'annotations': anns,
                   'categories': [{'id': i, 'name': name, 'supercategory': 'x'} for i, name in categories]}, f)
    return decoded


def rle_of(mask, compressed=True):
    """COCO RLE of a binary mask: compressed (``counts`` str) or uncompressed (``counts`` list)."""
    fortran = np.asfortranarray(mask.astype(np.uint8))
    if compressed:
        from pycocotools import mask as mask_utils
        rle = mask_utils.encode(fortran)
        return {'size': list(rle['size']), 'counts': rle['counts'].decode('ascii')}
    flat = fortran.flatten(order='F')
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {'size': list(mask.shape), 'counts': counts}


def write_ade20k(root, splits, size=(18, 22), seed=400, image_modes=None):
    """Write a tiny ADEChallengeData2016 under ``root``: images/<folder>/*.jpg and greyscale
    annotations/<folder>/*.png with raw values 0..150 (0 = "other").

    ``splits``: folder ('training'/'validation') -> stems. Returns stem -> (image, raw label).
    """
    base = os.path.join(str(root), 'ADEChallengeData2016')
    image_modes = image_modes or {}
    expected = {}
    for n, (folder, stem) in enumerate((f, s) for f, stems in splits.items() for s in stems):
        height, width = size[0] + n % 3, size[1] + n % 4
        image = write_jpeg(os.path.join(base, 'images', folder, stem + '.jpg'),
                           make_image(height, width, seed + n), image_modes.get(stem, 'RGB'))
        label = make_mask(height, width, seed + n, num_class=151, border=False)
        label[0, :3] = [0, 1, 150]  # always the extremes
        os.makedirs(os.path.join(base, 'annotations', folder), exist_ok=True)
        Image.fromarray(label.astype(np.uint8), mode='L').save(
            os.path.join(base, 'annotations', folder, stem + '.png'))
        expected[stem] = (image, label)
    return expected


def write_cityscapes(root, splits, size=(16, 32), seed=500, labels=('train', 'val', 'test')):
    """Write a tiny Cityscapes: leftImg8bit/<split>/<city>/*_leftImg8bit.png (RGB PNG) and
    gtFine/<split>/<city>/*_gtFine_labelIds.png (greyscale labelIds 0..33) plus a decoy
    *_gtFine_color.png, as in the release.

    ``splits``: split -> {city: [frame stems like 'aachen_000000_000019']}. Returns stem ->
    (image, raw labelIds).
    """
    root = str(root)
    expected = {}
    n = 0
    for split, cities in splits.items():
        for city, stems in cities.items():
            for stem in stems:
                image = make_image(size[0], size[1], seed + n)
                label = make_mask(size[0], size[1], seed + n, num_class=34, border=False)
                label[0, :4] = [0, 7, 33, 34 - 1]
                image_dir = os.path.join(root, 'leftImg8bit', split, city)
                label_dir = os.path.join(root, 'gtFine', split, city)
                os.makedirs(image_dir, exist_ok=True)
                os.makedirs(label_dir, exist_ok=True)
                Image.fromarray(image).save(os.path.join(image_dir, stem + '_leftImg8bit.png'))
                if split in labels:
                    Image.fromarray(label.astype(np.uint8), mode='L').save(
                        os.path.join(label_dir, stem + '_gtFine_labelIds.png'))
                    Image.fromarray(image).save(os.path.join(label_dir, stem + '_gtFine_color.png'))
                expected[stem] = (image, label)
                n += 1
    return expected
