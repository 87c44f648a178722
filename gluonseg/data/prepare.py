"""Download, verify and unpack the standard datasets' archives into the layout the loaders read.

The logic behind ``scripts/datasets/prepare_{voc,sbd,coco}.py``. For every archive of a dataset:

1. **Already extracted?** A marker ``<target>/.gluonseg_prepared/<archive>.json`` is written only
   after an extraction finished; when it names the archive's expected SHA-1 and the folders the
   archive creates still exist, the archive is skipped without being looked at (or downloaded).
2. **Find or download.** ``<download_dir>/<archive>`` is used when present and its SHA-1 matches;
   otherwise it is downloaded (resuming a ``.part`` file, retrying, verifying the SHA-1 before it
   is renamed into place: :func:`gluonseg.utils.download.download`). With archives already on
   disk and verified, nothing touches the network.
3. **Extract safely** (no member may land outside the target) into a staging folder next to the
   target, check that the expected folders are there, move the files into place, then write the
   marker. An extraction that fails leaves no marker, so the next run starts it again.

4. **One bad archive does not stop the others.** A failing archive (download error, wrong
   SHA-1, damaged or unsafe archive) is reported by name with the reason and the next one is
   prepared; at the end a summary lists every failure and the command exits with status 1.
5. **COCO annotations are checked** (``prepare_coco.py``): each extracted
   ``annotations/instances_<split>2017.json`` goes through
   :func:`gluonseg.utils.coco_annotations.validate_coco`, as the loaders will; an invalid file
   is a failure naming the image and annotation ids, degenerate annotations are counted in a
   warning. A file checked once (same size and modification time) is not checked again.

Nothing here decodes images, label PNGs or SBD ``.mat`` files: the unit of work is the archive
(its SHA-1 and a CRC-checked extraction) and, for COCO, the annotation file.

The archive table :data:`ARCHIVES` is module-level so a test (or a user with a repacked mirror)
can replace entries, e.g. ``ARCHIVES['benchmark.tgz'] = ARCHIVES['benchmark.tgz']._replace(sha1=...)``.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
import zipfile
import zlib
from collections import OrderedDict, namedtuple

from tqdm import tqdm

from ..utils.atomic import write_atomically
from ..utils.coco_annotations import COCOAnnotationError, read_coco_json, validate_coco
from ..utils.download import (ChecksumError, DownloadError, UnsafeArchiveError, download,
                              extract_archive, normalize_sha1)
from ..utils.filelock import FileLock
from ..utils.paths import datasets_dir

__all__ = ['Archive', 'DatasetSpec', 'ARCHIVES', 'DATASETS', 'PrepareError', 'PrepareFailures',
           'archive_url', 'is_extracted', 'fetch_archive', 'extract', 'prepare',
           'check_coco_annotations', 'main']

MARKER_DIR = '.gluonseg_prepared'
_STAGING_PREFIX = '.gluonseg_extracting_'

Archive = namedtuple('Archive', 'filename url sha1 size creates')
Archive.__doc__ = """One downloadable archive.

Attributes
----------
filename : str
    Name in the download folder (and the last part of the mirror URL).
url : str
    Official download URL.
sha1 : str
    Published SHA-1 of the archive (the only check of its content).
size : int
    Approximate size in bytes (for messages and the free-space warning only).
creates : tuple of str
    Paths, relative to the target folder, that extracting the archive creates; a missing one
    means the archive is not the expected one, or that its extraction was deleted.
"""

DatasetSpec = namedtuple('DatasetSpec', 'title root_name archives optional usage check')
DatasetSpec.__doc__ = """A dataset the scripts prepare.

Attributes
----------
title : str
root_name : str
    Default target is ``$GLUONSEG_HOME/datasets/<root_name>``.
archives : tuple of str
    Keys of :data:`ARCHIVES`, all needed unless listed in ``optional``.
optional : dict
    Option value -> archive key, for parts a user may skip (COCO's image splits).
usage : str
    How to load the result (printed at the end).
check : callable or None
    ``check(target_dir, options, quiet)`` run after the archives (``options``: the chosen values
    of ``optional``); returns ``{path: message naming the file and why it is unusable}`` for the
    files that failed.
"""

ARCHIVES = {
    'VOCtrainval_11-May-2012.tar': Archive(
        'VOCtrainval_11-May-2012.tar',
        'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar',
        '4e443f8a2eca6b1dac8a6c57641b67dd40621a49', 2000 * 10 ** 6,
        ('VOCdevkit/VOC2012/JPEGImages', 'VOCdevkit/VOC2012/SegmentationClass',
         'VOCdevkit/VOC2012/ImageSets/Segmentation')),
    # The www.eecs.berkeley.edu host of SBD died in 2018; www2 serves the same file (same SHA-1).
    'benchmark.tgz': Archive(
        'benchmark.tgz',
        'http://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/'
        'benchmark.tgz',
        '7129e0a480c2d6afb02b517bb18ac54283bfaa35', 1420 * 10 ** 6,
        ('benchmark_RELEASE/dataset/img', 'benchmark_RELEASE/dataset/cls',
         'benchmark_RELEASE/dataset/train.txt', 'benchmark_RELEASE/dataset/val.txt')),
    'annotations_trainval2017.zip': Archive(
        'annotations_trainval2017.zip',
        'http://images.cocodataset.org/annotations/annotations_trainval2017.zip',
        '8551ee4bb5860311e79dace7e79cb91e432e78b3', 253 * 10 ** 6,
        ('annotations/instances_train2017.json', 'annotations/instances_val2017.json')),
    'val2017.zip': Archive(
        'val2017.zip', 'http://images.cocodataset.org/zips/val2017.zip',
        '4950dc9d00dbe1c933ee0170f5797584351d2a41', 816 * 10 ** 6, ('val2017',)),
    'train2017.zip': Archive(
        'train2017.zip', 'http://images.cocodataset.org/zips/train2017.zip',
        '10ad623668ab00c62c096f0ed636d6aff41faca5', 19340 * 10 ** 6, ('train2017',)),
}

DATASETS = {
    'voc': DatasetSpec(
        'Pascal VOC 2012', 'voc', ('VOCtrainval_11-May-2012.tar',), {},
        "VOCSegmentation(root=%r, split='train' | 'val' | 'trainval')", None),
    'sbd': DatasetSpec(
        'SBD (VOC Aug)', 'voc', ('benchmark.tgz',), {},
        "VOCAugSegmentation(root=%r, split='train_aug') (train_aug also needs VOC 2012 "
        "in the same root: prepare_voc.py)", None),
    'coco': DatasetSpec(
        'COCO 2017', 'coco', ('annotations_trainval2017.zip', 'val2017.zip', 'train2017.zip'),
        {'train': 'train2017.zip', 'val': 'val2017.zip'},
        "COCOSegmentation(root=%r, split='train' | 'val') or COCOInstance(root=%r, ...)",
        # late-bound: check_coco_annotations is defined below
        lambda target_dir, splits, quiet: check_coco_annotations(target_dir, splits, quiet)),
}


class PrepareError(RuntimeError):
    """A dataset could not be prepared; the message names the archive or path and what to do."""


class PrepareFailures(PrepareError):
    """Some archives failed; the others were prepared.

    Attributes
    ----------
    failures : OrderedDict
        Archive filename -> why it failed.
    done : dict
        What :func:`prepare` would have returned for the archives that succeeded.
    """

    def __init__(self, failures, done):
        super(PrepareFailures, self).__init__(
            '%d of %d archives failed: %s' % (len(failures), len(failures) + len(done),
                                             '; '.join('%s: %s' % item for item in failures.items())))
        self.failures = failures
        self.done = done


# What one archive can fail with; each is reported and the other archives are still prepared.
_ARCHIVE_ERRORS = (PrepareError, DownloadError, UnsafeArchiveError, OSError)


def _reason(err):
    if isinstance(err, ChecksumError):
        return '%s. The server sent a different file; try again later or use --mirror' % err
    if isinstance(err, (PrepareError, DownloadError, UnsafeArchiveError)):
        return str(err)
    return '%s: %s' % (type(err).__name__, err)


def _say(quiet, *args):
    if not quiet:
        print(*args, flush=True)


def _gb(size):
    return '%.1f GB' % (size / 1e9) if size >= 1e8 else '%.0f MB' % (size / 1e6)


def archive_url(archive, mirror=None):
    """The URL to download ``archive`` from: the official one, or ``<mirror>/<filename>``."""
    if mirror:
        return mirror.rstrip('/') + '/' + archive.filename
    return archive.url


def _marker_path(archive, target_dir):
    return os.path.join(target_dir, MARKER_DIR, archive.filename + '.json')


def is_extracted(archive, target_dir):
    """Whether ``archive`` was fully extracted into ``target_dir`` (and still is).

    True when the marker written after a successful extraction names the archive's current
    expected SHA-1 and every path of ``archive.creates`` exists.
    """
    try:
        with open(_marker_path(archive, target_dir)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get('sha1') != normalize_sha1(archive.sha1):
        return False
    return all(os.path.exists(os.path.join(target_dir, path)) for path in archive.creates)


def _sha1_with_progress(path, progress):
    digest = hashlib.sha1()
    with open(path, 'rb') as f, tqdm(total=os.path.getsize(path), unit='B', unit_scale=True,
                                     unit_divisor=1024, desc='SHA-1 ' + os.path.basename(path),
                                     disable=not progress) as bar:
        while True:
            block = f.read(1 << 22)
            if not block:
                break
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def fetch_archive(archive, download_dir, mirror=None, offline=False, progress=True, quiet=False):
    """A verified local copy of ``archive``: found in ``download_dir`` or downloaded there.

    Parameters
    ----------
    archive : Archive
    download_dir : str
    mirror : str, optional
        Base URL to download from instead of the official host.
    offline : bool
        Never download; a missing archive is an error saying where to put it.
    progress : bool
        Progress bars for hashing and downloading.
    quiet : bool
        No messages on stdout.

    Returns
    -------
    (str, bool)
        The archive's path and whether it was downloaded by this call.

    Raises
    ------
    PrepareError
        The archive on disk has the wrong SHA-1, or it is missing and ``offline`` is set.
    DownloadError, ChecksumError
        The download failed (they name the URL and the file).
    """
    expected = normalize_sha1(archive.sha1)
    path = os.path.join(os.path.abspath(os.path.expanduser(download_dir)), archive.filename)
    if os.path.isfile(path):
        _say(quiet, 'Verifying %s' % path)
        actual = _sha1_with_progress(path, progress)
        if actual != expected:
            raise PrepareError(
                '%s has SHA-1 %s, expected %s: it is incomplete, corrupt or a different file. '
                'Delete it to download it again from %s' % (path, actual, expected, archive.url))
        return path, False
    url = archive_url(archive, mirror)
    if offline:
        raise PrepareError('%s not found and --offline is set: download %s (%s, SHA-1 %s) and '
                           'put it there, or pass --download-dir pointing at the folder holding '
                           'it' % (path, url, _gb(archive.size), expected))
    _warn_if_low_space(os.path.dirname(path), archive.size, quiet)
    _say(quiet, 'Downloading %s (about %s) to %s' % (url, _gb(archive.size), path))
    return download(url, path, sha1=expected, progress=progress), True


def _warn_if_low_space(folder, size, quiet):
    os.makedirs(folder, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < size:
        _say(quiet, 'Warning: only %s free in %s; this needs about %s' % (_gb(free), folder, _gb(size)))


def _merge_into(src, dst):
    """Move the tree ``src`` into ``dst``: whole folders when absent there, else file by file."""
    for name in os.listdir(src):
        source, target = os.path.join(src, name), os.path.join(dst, name)
        if os.path.isdir(source) and not os.path.islink(source) and os.path.isdir(target):
            _merge_into(source, target)
        else:
            os.replace(source, target)


def extract(archive, path, target_dir, quiet=False):
    """Extract ``path`` (the verified ``archive``) into ``target_dir`` and mark it complete.

    The members go to a staging folder inside ``target_dir`` first; only when all of them are
    out and ``archive.creates`` exists there are they moved into place and the marker written.
    A staging folder left by an interrupted run is removed first.

    Returns
    -------
    bool
        False when another process finished the extraction meanwhile, True otherwise.

    Raises
    ------
    PrepareError
        The archive could not be read or lacks the expected folders (nothing marked complete).
    UnsafeArchiveError
        A member would land outside ``target_dir`` (nothing extracted).
    """
    target_dir = os.path.abspath(os.path.expanduser(target_dir))
    state_dir = os.path.join(target_dir, MARKER_DIR)
    os.makedirs(state_dir, exist_ok=True)
    with FileLock(os.path.join(state_dir, archive.filename + '.lock')):
        if is_extracted(archive, target_dir):
            return False
        marker = _marker_path(archive, target_dir)
        if os.path.exists(marker):
            os.remove(marker)  # stale (other SHA-1, or the files were deleted): redo
        staging = os.path.join(target_dir, _STAGING_PREFIX + archive.filename)
        shutil.rmtree(staging, ignore_errors=True)
        _say(quiet, 'Extracting %s into %s' % (path, target_dir))
        start = time.time()
        try:
            members = extract_archive(path, staging)
            missing = [p for p in archive.creates if not os.path.exists(os.path.join(staging, p))]
            if missing:
                raise PrepareError('%s was extracted but holds no %s: it is not the expected '
                                   'archive (%s)' % (path, ', '.join(missing), archive.url))
            _merge_into(staging, target_dir)
        except (PrepareError, UnsafeArchiveError):
            raise
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError,
                ValueError) as err:
            raise PrepareError('Extracting %s failed (%s: %s); nothing was marked complete. If '
                               'the archive is damaged, delete it and run again'
                               % (path, type(err).__name__, err)) from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        content = {'archive': archive.filename, 'sha1': normalize_sha1(archive.sha1),
                   'url': archive.url, 'members': len(members),
                   'extracted_at': time.strftime('%Y-%m-%dT%H:%M:%S')}
        # atomic: a marker is always complete
        write_atomically(marker, lambda f: json.dump(content, f, indent=1), binary=False)
        _say(quiet, 'Extracted %d entries in %.0f s' % (len(members), time.time() - start))
    return True


def prepare(archives, download_dir, target_dir, mirror=None, offline=False,
            remove_archives=False, progress=True, quiet=False):
    """Make sure every archive is downloaded, verified and extracted into ``target_dir``.

    Parameters
    ----------
    archives : list of Archive
    download_dir : str
        Where archives are looked for and downloaded to.
    target_dir : str
        Dataset root the loaders read.
    mirror : str, optional
        Base URL replacing the official hosts (``<mirror>/<filename>``).
    offline : bool
        Never download (archives must be in ``download_dir``).
    remove_archives : bool
        Delete archives this call downloaded once they are extracted.
    progress, quiet : bool

    Returns
    -------
    dict
        filename -> what happened: ``'already extracted'``, ``'extracted'`` (from an archive on
        disk) or ``'downloaded and extracted'``.

    Raises
    ------
    PrepareFailures
        After every archive was tried, when some failed (each was reported on stderr as it
        failed unless ``quiet``); it lists them and holds what succeeded.
    """
    target_dir = os.path.abspath(os.path.expanduser(target_dir))
    os.makedirs(target_dir, exist_ok=True)
    done, failures = {}, OrderedDict()
    for archive in archives:
        try:
            done[archive.filename] = _prepare_archive(archive, download_dir, target_dir, mirror,
                                                      offline, remove_archives, progress, quiet)
        except _ARCHIVE_ERRORS as err:
            failures[archive.filename] = _reason(err)
            if not quiet:
                print('error: %s: %s\n(continuing with the other archives)'
                      % (archive.filename, failures[archive.filename]), file=sys.stderr, flush=True)
    if failures:
        raise PrepareFailures(failures, done)
    return done


def _prepare_archive(archive, download_dir, target_dir, mirror, offline, remove_archives,
                     progress, quiet):
    if is_extracted(archive, target_dir):
        _say(quiet, '%s: already extracted in %s' % (archive.filename, target_dir))
        return 'already extracted'
    path, downloaded = fetch_archive(archive, download_dir, mirror, offline, progress, quiet)
    extract(archive, path, target_dir, quiet)
    if downloaded and remove_archives:
        os.remove(path)
    return 'downloaded and extracted' if downloaded else 'extracted'


def _check_marker(path, target_dir):
    return os.path.join(target_dir, MARKER_DIR, 'checked_' + os.path.basename(path) + '.json')


def check_coco_annotations(target_dir, splits, quiet=False):
    """Check ``annotations/instances_<split>2017.json`` of ``splits`` as the COCO loaders will.

    Files not there (their archive is not extracted) are left alone. A file that passed is
    recorded with its size and modification time and not read again while they stay the same.

    Returns
    -------
    OrderedDict
        Path -> why it is unusable, a message naming the file (not JSON, or the
        :class:`COCOAnnotationError` naming the image and annotation ids), for the files that failed.
    """
    failures = OrderedDict()
    for split in splits:
        path = os.path.join(target_dir, 'annotations', 'instances_%s2017.json' % split)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue
        key = {'size': info.st_size, 'mtime_ns': info.st_mtime_ns}
        marker = _check_marker(path, target_dir)
        try:
            with open(marker) as f:
                if json.load(f).get('key') == key:
                    _say(quiet, '%s: already checked' % path)
                    continue
        except (OSError, ValueError, AttributeError):
            pass  # not checked yet, or an unreadable marker: check
        _say(quiet, 'Checking %s' % path)
        try:
            content = read_coco_json(path)
            clean, report = validate_coco(content, path)
        except (COCOAnnotationError, OSError) as err:
            failures[path] = str(err)
            if not quiet:
                print('error: %s' % err, file=sys.stderr, flush=True)
            continue
        summary = report.summary()
        if summary:
            _say(quiet, 'warning: %s' % summary)
        _say(quiet, '%s: %d images, %d usable annotations'
             % (path, len(clean['images']), len(clean['annotations'])))
        result = {'key': key, 'annotations': len(clean['annotations']), 'skipped': summary}
        try:
            write_atomically(marker, lambda f: json.dump(result, f, indent=1), binary=False)
        except OSError:
            pass  # a read-only dataset folder: the file is checked again next time
    return failures


def build_parser(dataset):
    """The command line of ``prepare_<dataset>.py``."""
    spec = DATASETS[dataset]
    default_root = datasets_dir(spec.root_name)
    names = ', '.join(spec.archives)
    parser = argparse.ArgumentParser(
        description='Download (or take from --download-dir), verify and extract %s (%s) into '
                    'the layout gluonseg reads. Re-running skips finished steps.' % (spec.title, names))
    parser.add_argument('--root', default=default_root,
                        help='dataset folder to create (default %s)' % default_root)
    parser.add_argument('--download-dir',
                        help='folder holding the archives, or where to download them '
                             '(default ROOT/downloads)')
    parser.add_argument('--mirror', '--url-base', dest='mirror',
                        help='download from MIRROR/<archive name> instead of the official hosts')
    parser.add_argument('--offline', action='store_true',
                        help='never use the network: the archives must be in --download-dir')
    parser.add_argument('--remove-archives', action='store_true',
                        help='delete the archives this run downloads once they are extracted')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    if spec.optional:
        parser.add_argument('--splits', nargs='+', choices=sorted(spec.optional),
                            default=sorted(spec.optional),
                            help='image splits to prepare (default: all)')
    return parser


def main(dataset, argv=None):
    """Run ``prepare_<dataset>.py`` with arguments ``argv``; returns the exit status (0 = ok)."""
    spec = DATASETS[dataset]
    args = build_parser(dataset).parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    download_dir = args.download_dir or os.path.join(root, 'downloads')
    options = args.splits if spec.optional else []
    skipped = {key for option, key in spec.optional.items() if option not in options}
    archives = [ARCHIVES[key] for key in spec.archives if key not in skipped]
    failed, ready = [], len(archives)  # one line per failure, naming its file
    try:
        prepare(archives, download_dir, root, mirror=args.mirror, offline=args.offline,
                remove_archives=args.remove_archives, progress=not args.no_progress)
    except PrepareFailures as err:
        failed += ['%s: %s' % item for item in err.failures.items()]
        ready -= len(err.failures)
    except OSError as err:  # the dataset folder itself cannot be created
        failed.append('%s: %s' % (root, _reason(err)))
        ready = 0
    if spec.check is not None:
        failed += list(spec.check(root, options, False).values())
    if failed:
        listed = '\n'.join('  ' + line.replace('\n', '\n  ') for line in failed)
        print('error: %s is not ready in %s: %d of %d archives ready; failed:\n%s'
              % (spec.title, root, ready, len(archives), listed), file=sys.stderr)
        return 1
    print('%s is ready in %s\nLoad it with %s' % (spec.title, root, spec.usage.replace('%r', repr(root))))
    return 0
