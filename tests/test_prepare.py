"""scripts/datasets/prepare_{voc,sbd,coco}.py on tiny archives served from 127.0.0.1.

The archives are built here from the fixture writers (a VOCdevkit tar, an SBD tgz with .mat
files, COCO zips); the expected SHA-1s in ``gluonseg.data.prepare.ARCHIVES`` are patched to
theirs, and ``--mirror`` points the scripts at the local server.
"""
import hashlib
import io
import os
import tarfile
import zipfile

import numpy as np
import pytest

from fixtures_data import rle_of, write_coco, write_sbd, write_voc
from test_docs import load_script
from gluonseg.data import DatasetNotFoundError, VOCAugSegmentation, VOCSegmentation
from gluonseg.data import prepare as prep
from gluonseg.utils import download as dl

VOC_TAR = 'VOCtrainval_11-May-2012.tar'
SBD_TGZ = 'benchmark.tgz'


def tar_bytes(src, top, mode='w'):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        tf.add(os.path.join(str(src), top), arcname=top)
    return buf.getvalue()


def zip_bytes(src, top):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_STORED) as zf:
        base = os.path.join(str(src), top)
        for folder, _, files in sorted(os.walk(base)):
            zf.write(folder, os.path.relpath(folder, str(src)))
            for name in sorted(files):
                path = os.path.join(folder, name)
                zf.write(path, os.path.relpath(path, str(src)))
    return buf.getvalue()


@pytest.fixture(scope='module')
def voc_src(tmp_path_factory):
    src = tmp_path_factory.mktemp('voc_src')
    expected = write_voc(src, {'train': ['2007_000001', '2007_000002'], 'val': ['2007_000003'],
                               'trainval': ['2007_000001', '2007_000002', '2007_000003']})
    return tar_bytes(src, 'VOCdevkit'), expected


@pytest.fixture(scope='module')
def sbd_src(tmp_path_factory):
    src = tmp_path_factory.mktemp('sbd_src')
    # 2007_000003 is VOC val: train_aug must leave it out even though SBD has it.
    expected = write_sbd(src, train=['2008_000010', '2007_000003'], val=['2008_000011'])
    return tar_bytes(src, 'benchmark_RELEASE', 'w:gz'), expected


@pytest.fixture(scope='module')
def coco_src(tmp_path_factory):
    src = tmp_path_factory.mktemp('coco_src')
    box = np.zeros((30, 40), dtype=np.uint8)
    box[5:20, 10:30] = 1
    for split, image_id in (('train', 1), ('val', 2)):
        write_coco(src, split, [{'id': image_id, 'height': 30, 'width': 40}],
                   [(1, 'person'), (5, 'airplane')],
                   [{'image_id': image_id, 'category_id': 5, 'segmentation': rle_of(box),
                     'area': 300.0, 'bbox': [10, 5, 20, 15]}])
    return {'annotations_trainval2017.zip': zip_bytes(src, 'annotations'),
            'train2017.zip': zip_bytes(src, 'train2017'), 'val2017.zip': zip_bytes(src, 'val2017')}


@pytest.fixture
def serve(file_server, monkeypatch):
    """serve(filename, data, sha1_of=None): put ``data`` on the server as /mirror/<filename> and
    make it the archive the scripts expect (SHA-1 of ``sha1_of`` if given, else of ``data``)."""
    monkeypatch.setattr(dl, 'BACKOFF_BASE', 0.01)

    def add(filename, data, sha1_of=None):
        file_server.add('/mirror/' + filename, data)
        digest = hashlib.sha1(data if sha1_of is None else sha1_of).hexdigest()
        monkeypatch.setitem(prep.ARCHIVES, filename, prep.ARCHIVES[filename]._replace(sha1=digest))
        return '/mirror/' + filename
    add.mirror = file_server.url('/mirror')
    add.server = file_server
    return add


def run(script, root, downloads, *extra):
    module = load_script('scripts/datasets/prepare_%s.py' % script)
    return module.main(['--root', str(root), '--download-dir', str(downloads), '--no-progress'] + list(extra))


def test_voc_and_sbd_download_extract_load_and_second_run_downloads_nothing(tmp_path, serve, voc_src,
                                                                             sbd_src, capsys):
    voc_tar, voc_expected = voc_src
    sbd_tgz, sbd_expected = sbd_src
    serve(VOC_TAR, voc_tar)
    serve(SBD_TGZ, sbd_tgz)
    root, downloads = tmp_path / 'voc', tmp_path / 'dl'
    assert run('voc', root, downloads, '--mirror', serve.mirror) == 0
    assert run('sbd', root, downloads, '--mirror', serve.mirror) == 0
    assert (root / 'VOCdevkit' / 'VOC2012' / 'JPEGImages').is_dir()
    assert (root / 'benchmark_RELEASE' / 'dataset' / 'cls' / '2008_000010.mat').is_file()
    assert 'VOCSegmentation(root=' in capsys.readouterr().out

    val = VOCSegmentation(str(root), 'val')
    image, mask = val[0]
    np.testing.assert_array_equal(image, voc_expected['2007_000003'][0])
    np.testing.assert_array_equal(mask, voc_expected['2007_000003'][1])
    aug = VOCAugSegmentation(str(root), 'train_aug')
    assert aug.ids == ['2007_000001', '2007_000002', '2008_000010', '2008_000011']
    np.testing.assert_array_equal(aug[2][1], sbd_expected['2008_000010'][1])

    served = len(serve.server.served)
    assert served == 2
    assert run('voc', root, downloads, '--mirror', serve.mirror) == 0
    assert run('sbd', root, downloads, '--mirror', serve.mirror) == 0
    assert len(serve.server.served) == served  # nothing requested
    assert capsys.readouterr().out.count('already extracted') == 2


def test_coco_splits_and_loaders(tmp_path, serve, coco_src):
    for name, data in coco_src.items():
        serve(name, data)
    root, downloads = tmp_path / 'coco', tmp_path / 'dl'
    assert run('coco', root, downloads, '--mirror', serve.mirror, '--splits', 'val') == 0
    requested = {r.path for r in serve.server.served}
    assert requested == {'/mirror/annotations_trainval2017.zip', '/mirror/val2017.zip'}
    assert not (root / 'train2017').exists()

    from gluonseg.data import COCOSegmentation
    image, mask = COCOSegmentation(str(root), 'val', min_pixels=None)[0]
    assert image.shape == (30, 40, 3) and (mask == 1).sum() == 300  # airplane = VOC class 1

    assert run('coco', root, downloads, '--mirror', serve.mirror) == 0  # now train2017 too
    assert {r.path for r in serve.server.served} - requested == {'/mirror/train2017.zip'}
    assert len(COCOSegmentation(str(root), 'train', min_pixels=None)) == 1
    from gluonseg.data import COCOInstance
    _, boxes, class_ids, masks = COCOInstance(str(root), 'train')[0]
    np.testing.assert_array_equal(boxes, [[10, 5, 29, 19]])
    assert class_ids.tolist() == [1] and masks.sum() == 300


def test_archives_on_disk_are_used_without_any_network_access(tmp_path, serve, voc_src, closed_port_url):
    voc_tar, _ = voc_src
    serve(VOC_TAR, voc_tar)
    downloads = tmp_path / 'archives'
    downloads.mkdir()
    (downloads / VOC_TAR).write_bytes(voc_tar)
    # A mirror nobody listens on: any download attempt would fail.
    assert run('voc', tmp_path / 'a', downloads, '--mirror', closed_port_url, '--offline') == 0
    assert run('voc', tmp_path / 'b', downloads, '--mirror', closed_port_url) == 0
    assert serve.server.served == []
    assert len(VOCSegmentation(str(tmp_path / 'b'), 'trainval')) == 3


def test_offline_without_archive_says_where_to_put_it(tmp_path, serve, voc_src, capsys):
    serve(VOC_TAR, voc_src[0])
    assert run('voc', tmp_path / 'voc', tmp_path / 'dl', '--offline') == 1
    err = capsys.readouterr().err
    assert os.path.join(str(tmp_path / 'dl'), VOC_TAR) in err and 'host.robots.ox.ac.uk' in err
    assert serve.server.served == []


def test_corrupted_download_fails_clearly_and_marks_nothing(tmp_path, serve, voc_src, capsys):
    path = serve(VOC_TAR, voc_src[0])
    serve.server.add_faults(path, 'corrupt', 'corrupt')
    root, downloads = tmp_path / 'voc', tmp_path / 'dl'
    assert run('voc', root, downloads, '--mirror', serve.mirror) == 1
    err = capsys.readouterr().err
    assert 'SHA-1 mismatch' in err and VOC_TAR in err
    assert not (downloads / VOC_TAR).exists()
    assert not (root / 'VOCdevkit').exists()
    assert not prep.is_extracted(prep.ARCHIVES[VOC_TAR], str(root))
    with pytest.raises(DatasetNotFoundError, match='prepare_voc.py'):
        VOCSegmentation(str(root), 'val')
    # The server recovers: the next run completes.
    assert run('voc', root, downloads, '--mirror', serve.mirror) == 0
    assert len(VOCSegmentation(str(root), 'val')) == 1


def test_local_archive_with_wrong_sha1_is_refused(tmp_path, serve, voc_src, capsys):
    serve(VOC_TAR, voc_src[0])
    downloads = tmp_path / 'dl'
    downloads.mkdir()
    (downloads / VOC_TAR).write_bytes(voc_src[0][:-1000])  # truncated copy
    assert run('voc', tmp_path / 'voc', downloads, '--mirror', serve.mirror) == 1
    err = capsys.readouterr().err
    assert 'expected %s' % prep.ARCHIVES[VOC_TAR].sha1 in err and 'Delete it' in err
    assert serve.server.served == [] and (downloads / VOC_TAR).exists()  # user's file kept


def test_archive_failing_midway_leaves_no_tree_counted_as_complete(tmp_path, serve, coco_src, capsys):
    good = coco_src['val2017.zip']
    damaged = bytearray(good)
    last = zipfile.ZipFile(io.BytesIO(good)).infolist()[-1]
    damaged[last.header_offset + 60] ^= 0xFF  # inside the last member's data: bad CRC when read
    damaged = bytes(damaged)
    serve('val2017.zip', damaged)  # its SHA-1 "matches": only extraction can notice
    serve('annotations_trainval2017.zip', coco_src['annotations_trainval2017.zip'])
    root, downloads = tmp_path / 'coco', tmp_path / 'dl'
    assert run('coco', root, downloads, '--mirror', serve.mirror, '--splits', 'val') == 1
    err = capsys.readouterr().err
    assert 'Extracting' in err and 'val2017.zip' in err and 'nothing was marked complete' in err
    assert not prep.is_extracted(prep.ARCHIVES['val2017.zip'], str(root))
    assert not (root / 'val2017').exists()
    assert [p for p in os.listdir(root) if p.startswith('.gluonseg_extracting')] == []
    assert prep.is_extracted(prep.ARCHIVES['annotations_trainval2017.zip'], str(root))

    (downloads / 'val2017.zip').unlink()  # as the message says; the good file is served now
    serve('val2017.zip', good)
    assert run('coco', root, downloads, '--mirror', serve.mirror, '--splits', 'val') == 0
    assert len(os.listdir(root / 'val2017')) == 1


def test_deleted_extraction_is_redone_from_the_archive_on_disk(tmp_path, serve, sbd_src):
    serve(SBD_TGZ, sbd_src[0])
    root, downloads = tmp_path / 'voc', tmp_path / 'dl'
    assert run('sbd', root, downloads, '--mirror', serve.mirror) == 0
    (root / 'benchmark_RELEASE' / 'dataset' / 'train.txt').unlink()
    stale = root / ('.gluonseg_extracting_' + SBD_TGZ)  # left by a killed run
    (stale / 'junk').mkdir(parents=True)
    assert run('sbd', root, downloads, '--mirror', serve.mirror) == 0
    assert (root / 'benchmark_RELEASE' / 'dataset' / 'train.txt').is_file() and not stale.exists()
    assert len(serve.server.served) == 1  # re-extracted from disk, not downloaded again
    assert len(VOCAugSegmentation(str(root), 'train')) == 2


def test_interrupted_download_resumes(tmp_path, serve, sbd_src):
    path = serve(SBD_TGZ, sbd_src[0])
    serve.server.add_faults(path, 'truncate')
    assert run('sbd', tmp_path / 'voc', tmp_path / 'dl', '--mirror', serve.mirror, '--remove-archives') == 0
    ranges = [r.range_start for r in serve.server.requests_for(path)]
    assert ranges[0] is None and ranges[1] == len(sbd_src[0]) // 2
    assert not (tmp_path / 'dl' / SBD_TGZ).exists()  # --remove-archives
    assert prep.is_extracted(prep.ARCHIVES[SBD_TGZ], str(tmp_path / 'voc'))


def test_unsafe_archive_is_refused(tmp_path, serve, capsys):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tf:
        info = tarfile.TarInfo('../escaped.txt')
        info.size = 2
        tf.addfile(info, io.BytesIO(b'hi'))
    serve(VOC_TAR, buf.getvalue())
    root = tmp_path / 'data' / 'voc'
    assert run('voc', root, tmp_path / 'dl', '--mirror', serve.mirror) == 1
    assert 'Refusing to extract' in capsys.readouterr().err
    assert not (tmp_path / 'data' / 'escaped.txt').exists()
    assert not (root / 'VOCdevkit').exists()


def test_archive_without_the_expected_folders_is_not_marked(tmp_path, serve, sbd_src, capsys):
    serve(VOC_TAR, sbd_src[0])  # the SBD tgz where the VOC tar is expected
    assert run('voc', tmp_path / 'voc', tmp_path / 'dl', '--mirror', serve.mirror) == 1
    assert 'holds no VOCdevkit/VOC2012/JPEGImages' in capsys.readouterr().err
    assert not prep.is_extracted(prep.ARCHIVES[VOC_TAR], str(tmp_path / 'voc'))


def test_official_table():
    """The URLs and SHA-1s the scripts use by default (notes section 5.6; SBD on www2)."""
    table = prep.ARCHIVES
    assert table[VOC_TAR].sha1 == '4e443f8a2eca6b1dac8a6c57641b67dd40621a49'
    assert table[SBD_TGZ].url.startswith('http://www2.eecs.berkeley.edu/')
    assert table[SBD_TGZ].sha1 == '7129e0a480c2d6afb02b517bb18ac54283bfaa35'
    assert table['train2017.zip'].sha1 == '10ad623668ab00c62c096f0ed636d6aff41faca5'
    assert table['val2017.zip'].sha1 == '4950dc9d00dbe1c933ee0170f5797584351d2a41'
    assert table['annotations_trainval2017.zip'].sha1 == '8551ee4bb5860311e79dace7e79cb91e432e78b3'
    for spec in prep.DATASETS.values():
        assert all(name in table for name in spec.archives)


@pytest.mark.fault('one damaged archive among the COCO archives')
def test_damaged_archive_is_reported_and_the_others_are_still_prepared(tmp_path, serve, coco_src, capsys):
    good = coco_src['val2017.zip']
    damaged = bytearray(good)
    last = zipfile.ZipFile(io.BytesIO(good)).infolist()[-1]
    damaged[last.header_offset + 60] ^= 0xFF  # bad CRC, found only when extracting
    serve('val2017.zip', bytes(damaged))
    serve('annotations_trainval2017.zip', coco_src['annotations_trainval2017.zip'])
    serve('train2017.zip', coco_src['train2017.zip'])
    root, downloads = tmp_path / 'coco', tmp_path / 'dl'
    assert run('coco', root, downloads, '--mirror', serve.mirror) == 1
    out, err = capsys.readouterr()
    assert 'error: val2017.zip: Extracting' in err and 'continuing with the other archives' in err
    # the archive after the bad one was prepared, and the annotations were checked
    assert prep.is_extracted(prep.ARCHIVES['train2017.zip'], str(root))
    assert prep.is_extracted(prep.ARCHIVES['annotations_trainval2017.zip'], str(root))
    assert 'instances_train2017.json: 1 images, 1 usable annotations' in out
    summary = err[err.index('error: COCO 2017 is not ready'):]
    assert '2 of 3 archives ready; failed:\n  val2017.zip: Extracting' in summary
    assert 'train2017' not in summary and 'annotations_trainval' not in summary

    (downloads / 'val2017.zip').unlink()
    serve('val2017.zip', good)
    assert run('coco', root, downloads, '--mirror', serve.mirror) == 0
    out = capsys.readouterr().out
    assert 'train2017.zip: already extracted' in out and 'instances_val2017.json: already checked' in out
    assert [r.path for r in serve.server.served].count('/mirror/train2017.zip') == 1


@pytest.mark.fault('NaN polygon in the COCO annotations of a verified archive')
def test_invalid_coco_annotations_are_named_and_the_images_still_extracted(tmp_path, serve, coco_src, capsys):
    src = tmp_path / 'src'
    polygon = [[10, 5, 30, 5, 30, 20, 10, 20]]
    write_coco(src, 'val', [{'id': 2, 'height': 30, 'width': 40}], [(1, 'person')],
               [{'image_id': 2, 'category_id': 1, 'segmentation': [[10, 5, float('nan'), 5, 30, 20]],
                 'area': 300.0, 'bbox': [10, 5, 20, 15]}])
    write_coco(src, 'train', [{'id': 1, 'height': 30, 'width': 40}], [(1, 'person')],
               [{'image_id': 1, 'category_id': 1, 'segmentation': polygon, 'area': 300.0,
                 'bbox': [10, 5, 20, 15]},
                {'image_id': 1, 'category_id': 1, 'segmentation': [], 'area': 1.0}])
    serve('annotations_trainval2017.zip', zip_bytes(src, 'annotations'))
    serve('val2017.zip', coco_src['val2017.zip'])
    serve('train2017.zip', coco_src['train2017.zip'])
    root, downloads = tmp_path / 'coco', tmp_path / 'dl'
    assert run('coco', root, downloads, '--mirror', serve.mirror) == 1
    out, err = capsys.readouterr()
    for name in ('annotations_trainval2017.zip', 'val2017.zip', 'train2017.zip'):
        assert prep.is_extracted(prep.ARCHIVES[name], str(root)), name
    bad = os.path.join(str(root), 'annotations', 'instances_val2017.json')
    summary = err[err.index('error: COCO 2017 is not ready'):]
    assert '3 of 3 archives ready; failed:\n  %s: 1 invalid entry;' % bad in summary
    assert 'image 2, annotation 1 has a non-finite coordinate nan in polygon 0' in summary
    assert ('warning: %s: skipped 1 of 2 annotations: 1 with an empty segmentation (ids 2)'
            % os.path.join(str(root), 'annotations', 'instances_train2017.json')) in out
    # the bad file is checked again on the next run (nothing recorded it as fine); the good one is not
    assert run('coco', root, downloads, '--mirror', serve.mirror) == 1
    out, err = capsys.readouterr()
    assert 'instances_train2017.json: already checked' in out and 'image 2, annotation 1' in err
