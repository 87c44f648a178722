"""Pretrained weight store, compatible with the files GluonCV publishes.

A weight file is ``{name}-{sha1[:8]}.params``, published zipped at
``{repo}gluon/models/{name}-{sha1[:8]}.zip``. Files are cached in
:func:`gluonseg.utils.paths.models_dir` (``$GLUONSEG_HOME/models``) or an explicit
``root``, and a verified copy already in GluonCV's cache (``$MXNET_HOME/models``,
default ``~/.mxnet/models``) is reused instead of downloading it again.
"""
import glob
import logging
import os
import shutil
import tempfile
import zipfile
from urllib.parse import urlsplit

from ..utils.atomic import atomic_copy, remove_quietly
from ..utils.download import (CorruptArchiveError, DownloadError, download, extract_archive,
                              normalize_sha1, reject_file, sha1_file)
from ..utils.filelock import NOT_WRITABLE_ERRNOS, FileLock
from ..utils.paths import models_dir

__all__ = ['DEFAULT_REPO_URL', 'WEIGHTS_MAX_RATIO', 'ModelStoreError', 'repo_url',
           'model_file_name', 'model_url', 'gluoncv_models_dir', 'get_model_file', 'purge']

log = logging.getLogger(__name__)

DEFAULT_REPO_URL = 'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/'
# First one set wins.
REPO_ENV_VARS = ('GLUONSEG_REPO_URL', 'MXNET_GLUON_REPO')
# Trained float weights shrink by less than 2x when zipped; a weight zip expanding more is
# refused before extraction (a 45 MB zip declaring a 1 GiB member).
WEIGHTS_MAX_RATIO = 10


class ModelStoreError(DownloadError):
    """Weights could not be obtained; the message says where to place the file by hand.

    Attributes
    ----------
    url, path, status
        As for :class:`~gluonseg.utils.download.DownloadError` (``path`` is the cache file).
    sha1 : str or None
        The expected SHA-1.
    cause : BaseException or None
        The underlying error, when there is one.
    """

    def __init__(self, message, url=None, path=None, status=None, sha1=None, cause=None):
        super().__init__(message, url=url, path=path, status=status, cause=cause)
        self.sha1 = sha1


def repo_url():
    """Base URL of the weight repository, ending with ``/``.

    ``$GLUONSEG_REPO_URL``, else ``$MXNET_GLUON_REPO``, else :data:`DEFAULT_REPO_URL`.

    Returns
    -------
    str
    """
    for var in REPO_ENV_VARS:
        value = os.environ.get(var, '').strip()
        if value:
            return value if value.endswith('/') else value + '/'
    return DEFAULT_REPO_URL


def model_file_name(name, sha1):
    """File name of a weight file: ``{name}-{sha1[:8]}.params`` (``{name}.params`` without sha1).

    Parameters
    ----------
    name : str
    sha1 : str or None

    Returns
    -------
    str
    """
    return '%s-%s.params' % (name, sha1[:8]) if sha1 else '%s.params' % name


def model_url(name, sha1, repo=None):
    """Published URL of a weight file: ``{repo}gluon/models/{name}-{sha1[:8]}.zip``.

    Parameters
    ----------
    name : str
    sha1 : str
    repo : str or None
        Repository base URL; :func:`repo_url` when None.

    Returns
    -------
    str
    """
    repo = repo_url() if repo is None else (repo if repo.endswith('/') else repo + '/')
    return '%sgluon/models/%s-%s.zip' % (repo, name, sha1[:8])


def gluoncv_models_dir():
    """GluonCV's weight cache: ``$MXNET_HOME/models``, default ``~/.mxnet/models``.

    Returns
    -------
    str
    """
    mxnet_home = os.environ.get('MXNET_HOME') or os.path.join('~', '.mxnet')
    return os.path.join(os.path.expanduser(mxnet_home), 'models')


def _matches(path, sha1):
    return os.path.isfile(path) and (sha1 is None or sha1_file(path) == sha1)


def get_model_file(name, sha1, root=None, url=None, progress=True):
    """Path of the verified weight file ``{name}-{sha1[:8]}.params``, downloading it if needed.

    Looks, in order, for

    a. the file in the cache (``root``) with the full SHA-1 ``sha1``; a file there with
       another SHA-1 (perhaps placed by hand) is moved to ``<file>.rejected``, and the error
       raised when no right file can be obtained says so;
    b. the same file name in GluonCV's cache (:func:`gluoncv_models_dir`) with the full
       SHA-1 ``sha1``, copied (atomically) into the cache;
    c. a download from ``url``, or else from :func:`model_url` (a zip holding the
       ``.params``), extracted safely, verified and moved into the cache atomically; the
       zip is deleted. When the SHA-1 does not match or the zip cannot be read, it is
       downloaded once more from zero. A zip expanding more than :data:`WEIGHTS_MAX_RATIO`
       times is refused before extraction. The time limits are those of
       :func:`gluonseg.utils.download.download`.

    Concurrent calls for the same file (threads or processes) download it once.

    Parameters
    ----------
    name : str
        Model name, e.g. ``'fcn_resnet101_voc'``.
    sha1 : str or None
        Full SHA-1 (40 hex digits) of the ``.params`` file. ``None`` is only for weights a
        user registered without a hash: then **nothing is verified** (any cached
        ``{name}.params`` is trusted, GluonCV's cache is not searched) and ``url`` is
        required unless the file is already cached.
    root : str or None
        Cache folder; :func:`gluonseg.utils.paths.models_dir` when None. An explicit root
        is always used as given (environment variables do not override it).
    url : str or None
        Where to download from instead of the repository: a ``.zip`` holding the
        ``.params`` file, or the ``.params`` file itself.
    progress : bool
        Show a download progress bar.

    Returns
    -------
    str
        Absolute path of the weight file in the cache.

    Raises
    ------
    ModelStoreError
        Cannot download (offline, unreachable host, 404, deadline passed, ...) or the
        downloaded weights have the wrong SHA-1 or cannot be unzipped. The message names
        the URL, the file name, the SHA-1, the cache folder where the file can be placed by
        hand, and a file that was there but refused.
    PermissionError
        The cache folder cannot be written to; the message names it and whether ``root``,
        ``$GLUONSEG_HOME`` or the default chose it.
    UnsafeArchiveError
        The zip would write outside the cache or expand too much (nothing was extracted).
    ValueError
        ``sha1`` is not a full SHA-1, or is None without ``url`` and no cached file.
    """
    if sha1 is not None:
        sha1 = normalize_sha1(sha1)
    root_arg = root
    root = os.path.abspath(os.path.expanduser(root)) if root else os.path.abspath(models_dir())
    file_name = model_file_name(name, sha1)
    path = os.path.join(root, file_name)
    if sha1 is not None and _matches(path, sha1):  # fast path, no lock needed
        return path

    # One lock for the whole lookup (distinct from download()'s '<file>.lock').
    lock = FileLock(os.path.join(root, file_name[:-len('.params')] + '.lock'))
    try:
        os.makedirs(root, exist_ok=True)
        lock.acquire()
    except OSError as err:
        if err.errno not in NOT_WRITABLE_ERRNOS:
            raise
        raise _cache_not_writable(root, root_arg, err) from None
    try:
        if _matches(path, sha1):
            return path
        refused = None
        if os.path.exists(path):
            actual = sha1_file(path)
            rejected = reject_file(path)
            refused = ('A file was already at %s, but its SHA-1 is %s, not %s (incomplete, '
                       'damaged or another version of the weights); it was moved to %s.'
                       % (path, actual, sha1, rejected))
            log.warning(refused)

        if sha1 is not None:
            gluoncv_path = os.path.join(gluoncv_models_dir(), file_name)
            if (os.path.abspath(gluoncv_path) != path and _matches(gluoncv_path, sha1)):
                log.info('Reusing %s from the GluonCV cache', gluoncv_path)
                atomic_copy(gluoncv_path, path)
                return path

        if url is None:
            if sha1 is None:
                raise ValueError('No SHA-1 and no URL for model %r, and %s does not exist'
                                 % (name, path))
            url = model_url(name, sha1)
        _download_into_cache(name, sha1, url, path, progress, refused)
    finally:
        lock.release()
    return path


def _cache_not_writable(root, root_arg, err):
    if root_arg:
        chosen_by = 'the root=%r argument' % (root_arg,)
    elif os.environ.get('GLUONSEG_HOME'):
        chosen_by = 'GLUONSEG_HOME=%s' % os.environ['GLUONSEG_HOME']
    else:
        chosen_by = 'the default, as GLUONSEG_HOME is not set'
    detail = err.strerror + (': %s' % err.filename if err.filename else '')
    return PermissionError(err.errno, 'The weight cache %s (chosen by %s) is not writable: %s. '
                           'Set GLUONSEG_HOME or pass root= to a writable folder'
                           % (root, chosen_by, detail))


def _is_zip_url(url):
    return urlsplit(url).path.lower().endswith('.zip')


def _download_into_cache(name, sha1, url, path, progress, refused):
    """Download ``url`` and move the verified weights to ``path``; retry once on a bad file.

    ``refused`` describes a file that was at ``path`` with the wrong SHA-1, or is None.
    """
    problem = None
    for attempt in (1, 2):
        try:
            problem = _fetch_verified(url, path, sha1, progress)
        except ModelStoreError:
            raise
        except DownloadError as err:
            # The message holds the download's own: a chained traceback would repeat it.
            raise ModelStoreError(_unavailable_message(name, sha1, url, path, err, refused),
                                  url=url, path=path, status=err.status, sha1=sha1,
                                  cause=err) from None
        if problem is None:
            return
        if attempt == 1:
            log.warning('%s; downloading it again', problem)
    raise ModelStoreError('%s (downloaded twice; nothing was cached).%s If you have the right '
                          'file, place it by hand:\n    cp <file> %s'
                          % (problem, ' ' + refused if refused else '', path),
                          url=url, path=path, sha1=sha1)


def _fetch_verified(url, path, sha1, progress):
    """Download ``url`` (a zip holding the ``.params``, or the ``.params`` itself), verify
    the weights and move them to ``path``.

    Returns None on success, else a description of what was wrong with the download.
    """
    root = os.path.dirname(path)
    file_name = os.path.basename(path)
    stem = file_name[:-len('.params')]
    is_zip_url = _is_zip_url(url)
    downloaded = os.path.join(root, stem + ('.zip' if is_zip_url else '.download'))
    workdir = None
    try:
        download(url, downloaded, sha1=None, progress=progress)
        # Sniff rather than trust the URL: a .params file is never a valid zip.
        if zipfile.is_zipfile(downloaded):
            workdir = tempfile.mkdtemp(prefix=stem + '.', suffix='.unzip', dir=root)
            try:
                extracted = extract_archive(downloaded, workdir, max_ratio=WEIGHTS_MAX_RATIO)
            except CorruptArchiveError as err:
                return 'The zip from %s cannot be read: %s' % (url, err)
            params = [p for p in extracted if p.endswith('.params') and os.path.isfile(p)]
            # Prefer the published member name; a user's zip may hold one other .params.
            chosen = [p for p in params if os.path.basename(p) == file_name] or params
            if len(chosen) != 1:
                found = [os.path.relpath(p, workdir) for p in params] or 'no .params file'
                raise ModelStoreError('The zip from %s holds %s; expected %s'
                                      % (url, found, file_name), url=url, path=path,
                                      sha1=sha1)
            weights = chosen[0]
        elif is_zip_url:
            return '%s did not return a zip archive' % url
        else:
            weights = downloaded
        if sha1 is not None:
            actual = sha1_file(weights)
            if actual != sha1:
                return ('SHA-1 mismatch for %s from %s: expected %s, got %s'
                        % (file_name, url, sha1, actual))
        os.replace(weights, path)
        return None
    finally:
        remove_quietly(downloaded)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _unavailable_message(name, sha1, url, path, err, refused):
    file_name = os.path.basename(path)
    lines = ['Cannot get the weights of model %r: %s' % (name, err),
             '    URL: %s' % url,
             '    expected file: %s (SHA-1 %s)' % (file_name, sha1 or 'not given')]
    if refused:
        lines.append(refused)
    lines += ['If this machine is offline or the host is unreachable, fetch the file '
              'elsewhere (unzip it if it is a .zip) and place it by hand:',
              '    cp <file> %s' % path]
    if not url.startswith(repo_url()):
        return '\n'.join(lines)
    lines.append('or set GLUONSEG_REPO_URL to a mirror holding gluon/models/%s'
                 % os.path.basename(urlsplit(url).path))
    return '\n'.join(lines)


def purge(root=None):
    """Delete the cached weight files (``*.params``), files set aside as
    ``*.params.rejected`` and leftover partial downloads.

    Parameters
    ----------
    root : str or None
        Cache folder; :func:`gluonseg.utils.paths.models_dir` when None.

    Returns
    -------
    list of str
        The deleted files.
    """
    root = os.path.abspath(os.path.expanduser(root)) if root else os.path.abspath(models_dir())
    removed = []
    for pattern in ('*.params', '*.params.rejected', '*.download', '*.download.part',
                    '*.zip.part'):
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            if os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed

