"""gluonseg.utils.download and gluonseg.utils.filelock against a local HTTP server."""
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

from fixtures_data import call_in_threads, payload, sha1_of
from gluonseg.utils import download as dl
from gluonseg.utils.download import (ChecksumError, DownloadError, UnsafeArchiveError,
                                     download, extract_archive, sha1_file)
from gluonseg.utils.filelock import FileLock, FileLockTimeout

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Child processes import the checkout's gluonseg (argv[1]), not an installed copy.
CHILD_PRELUDE = r'''
import sys
sys.path.insert(0, sys.argv[1])
'''


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(dl, 'BACKOFF_BASE', 0.001)


def leftovers(folder):
    return sorted(name for name in os.listdir(folder)
                  if name.endswith(('.part', '.lock')))


# -- sha1_file --------------------------------------------------------------------------------

def test_sha1_file_is_full_digest_across_chunks(tmp_path):
    data = payload(10_000)
    path = tmp_path / 'f.bin'
    path.write_bytes(data)
    assert sha1_file(str(path), chunk=777) == sha1_of(data)
    assert len(sha1_file(str(path))) == 40


def test_prefix_sha1_is_refused(tmp_path, file_server):
    url = file_server.add('/f.bin', b'abc')
    with pytest.raises(ValueError, match='40 hex'):
        download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(b'abc')[:8], progress=False)
    assert file_server.served == []


# -- download ---------------------------------------------------------------------------------

def test_download_success_with_progress_bar(tmp_path, file_server, capsys):
    data = payload(300_000)
    url = file_server.add('/data/archive.tar', data)
    target = tmp_path / 'sub' / 'archive.tar'
    result = download(url, str(target), sha1=sha1_of(data), progress=True)
    assert result == str(target)
    assert target.read_bytes() == data
    err = capsys.readouterr().err
    assert 'archive.tar' in err and '100%' in err
    assert leftovers(str(tmp_path / 'sub')) == []
    assert file_server.full_transfers('/data/archive.tar') == 1


def test_download_progress_off_prints_nothing(tmp_path, file_server, capsys):
    data = payload(50_000)
    url = file_server.add('/f.bin', data)
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert capsys.readouterr().err == ''
    assert (tmp_path / 'f.bin').read_bytes() == data


def test_existing_verified_file_is_not_downloaded(tmp_path, file_server):
    data = payload(1000)
    url = file_server.add('/f.bin', data)
    (tmp_path / 'f.bin').write_bytes(data)
    assert download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert file_server.served == []


def test_existing_file_with_wrong_sha1_is_replaced(tmp_path, file_server):
    data = payload(1000)
    url = file_server.add('/f.bin', data)
    (tmp_path / 'f.bin').write_bytes(b'stale contents')
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert (tmp_path / 'f.bin').read_bytes() == data
    assert file_server.full_transfers('/f.bin') == 1


def test_corrupt_download_is_downloaded_again_once(tmp_path, file_server):
    data = payload(100_000)
    url = file_server.add('/f.bin', data)
    file_server.add_faults('/f.bin', 'corrupt')
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert (tmp_path / 'f.bin').read_bytes() == data
    served = file_server.requests_for('/f.bin')
    assert [r.fault for r in served] == ['corrupt', None]
    # The second download starts from zero: the corrupt .part was deleted, not resumed.
    assert served[1].range_start is None


def test_always_corrupt_download_raises_naming_file_and_hashes(tmp_path, file_server):
    data = payload(100_000)
    url = file_server.add('/f.bin', data)
    file_server.add_faults('/f.bin', 'corrupt', 'corrupt')
    target = tmp_path / 'f.bin'
    with pytest.raises(ChecksumError) as info:
        download(url, str(target), sha1=sha1_of(data), progress=False)
    message = str(info.value)
    corrupt_sha1 = sha1_of(bytes(b ^ 0xFF for b in data))
    assert str(target) in message and url in message
    assert sha1_of(data) in message and corrupt_sha1 in message
    assert (info.value.expected, info.value.actual) == (sha1_of(data), corrupt_sha1)
    assert not target.exists()
    assert leftovers(str(tmp_path)) == []
    assert len(file_server.requests_for('/f.bin')) == 2


def test_truncated_transfer_is_resumed_with_range(tmp_path, file_server):
    data = payload(200_000)
    url = file_server.add('/f.bin', data)
    file_server.add_faults('/f.bin', 'truncate')
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert (tmp_path / 'f.bin').read_bytes() == data
    first, second = file_server.requests_for('/f.bin')
    assert (first.status, first.range_start, first.sent) == (200, None, len(data) // 2)
    # Resumed where the first transfer stopped, only the rest was sent again.
    assert second.status == 206
    assert 0 < second.range_start <= len(data) // 2
    assert second.sent == len(data) - second.range_start


def test_resume_of_existing_part_file(tmp_path, file_server):
    data = payload(150_000)
    url = file_server.add('/f.bin', data)
    (tmp_path / 'f.bin.part').write_bytes(data[:60_000])
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert (tmp_path / 'f.bin').read_bytes() == data
    (request,) = file_server.requests_for('/f.bin')
    assert (request.status, request.range_start, request.sent) == (206, 60_000, 90_000)
    assert not (tmp_path / 'f.bin.part').exists()


def test_part_file_restarts_from_zero_when_server_ignores_range(tmp_path, file_server):
    data = payload(50_000)
    url = file_server.add('/f.bin', data)
    file_server.add_faults('/f.bin', 'ignore_range')
    (tmp_path / 'f.bin.part').write_bytes(b'x' * 10_000)  # would corrupt an append
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert (tmp_path / 'f.bin').read_bytes() == data
    (request,) = file_server.requests_for('/f.bin')
    assert (request.status, request.range_start) == (200, 10_000)


def test_part_file_longer_than_remote_file_restarts(tmp_path, file_server):
    data = payload(5_000)
    url = file_server.add('/f.bin', data)
    (tmp_path / 'f.bin.part').write_bytes(payload(8_000, seed=1))
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False)
    assert (tmp_path / 'f.bin').read_bytes() == data
    assert [r.status for r in file_server.requests_for('/f.bin')] == [416, 200]


@pytest.mark.parametrize('status', [404, 403])
def test_client_error_fails_at_once_naming_url(tmp_path, file_server, status):
    url = file_server.add('/f.bin', b'data')
    file_server.add_faults('/f.bin', status)
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=5)
    assert url in str(info.value) and str(status) in str(info.value)
    assert info.value.status == status and info.value.url == url
    assert len(file_server.requests_for('/f.bin')) == 1
    assert os.listdir(str(tmp_path)) == []


def test_server_error_is_retried_then_raised(tmp_path, file_server):
    url = file_server.add('/f.bin', b'data')
    file_server.add_faults('/f.bin', *[500] * 10)
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=3)
    message = str(info.value)
    assert url in message and '500' in message and str(tmp_path / 'f.bin') in message
    assert len(file_server.requests_for('/f.bin')) == 4  # first try + 3 retries
    assert not (tmp_path / 'f.bin').exists()


def test_transient_failures_then_success(tmp_path, file_server):
    data = payload(20_000)
    url = file_server.add('/f.bin', data)
    file_server.add_faults('/f.bin', 503, 'drop', 500)
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False, retries=3)
    assert (tmp_path / 'f.bin').read_bytes() == data
    assert len(file_server.requests_for('/f.bin')) == 4


def test_backoff_is_exponential(tmp_path, file_server, monkeypatch):
    delays = []
    monkeypatch.setattr(dl.time, 'sleep', delays.append)
    monkeypatch.setattr(dl, 'BACKOFF_BASE', 0.5)
    monkeypatch.setattr(dl, 'BACKOFF_MAX', 3.0)
    url = file_server.add('/f.bin', b'data')
    file_server.add_faults('/f.bin', *[500] * 5)
    with pytest.raises(DownloadError):
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=4)
    assert delays == [0.5, 1.0, 2.0, 3.0]


def test_connection_refused_names_url(tmp_path, closed_port_url):
    url = closed_port_url + 'f.bin'
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=2)
    assert url in str(info.value) and 'refused' in str(info.value)
    assert not (tmp_path / 'f.bin').exists()


def test_two_processes_download_once(tmp_path, file_server):
    data = payload(400_000)
    url = file_server.add('/big.bin', data)
    file_server.chunk_delay = 0.02  # ~0.5 s transfer, so both processes overlap
    target = str(tmp_path / 'big.bin')
    code = CHILD_PRELUDE + r'''
from gluonseg.utils.download import download
print(download(sys.argv[2], sys.argv[3], sha1=sys.argv[4], progress=False))
'''
    env = dict(os.environ, NO_PROXY='127.0.0.1', no_proxy='127.0.0.1')
    children = [subprocess.Popen([sys.executable, '-c', code, REPO_ROOT, url, target,
                                  sha1_of(data)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env, text=True)
                for _ in range(2)]
    outputs = [child.communicate(timeout=30) for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err
        assert out.strip() == target
    assert sha1_file(target) == sha1_of(data)
    assert len(file_server.requests_for('/big.bin')) == 1
    assert file_server.full_transfers('/big.bin') == 1
    assert leftovers(str(tmp_path)) == []


def test_two_threads_download_once(tmp_path, file_server):
    data = payload(100_000)
    url = file_server.add('/f.bin', data)
    file_server.chunk_delay = 0.02
    results, errors = call_in_threads(
        lambda: download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False))
    assert errors == [] and results == [str(tmp_path / 'f.bin')] * 3
    assert file_server.full_transfers('/f.bin') == 1


# -- FileLock ---------------------------------------------------------------------------------

def test_lock_timeout_names_lock_file(tmp_path):
    path = str(tmp_path / 'x.lock')
    with FileLock(path):
        with pytest.raises(FileLockTimeout) as info:
            FileLock(path, timeout=0.1).acquire()
        assert path in str(info.value)
        assert str(os.getpid()) in str(info.value)  # who holds it
    with FileLock(path, timeout=0):
        assert os.path.exists(path)
    assert not os.path.exists(path)  # removed on release


def test_lock_is_reentrant_for_the_same_object(tmp_path):
    lock = FileLock(str(tmp_path / 'x.lock'), timeout=0)
    with lock:
        with lock:
            assert lock.is_locked
        assert lock.is_locked
    assert not lock.is_locked


def _hold_lock_in_child(lock_path, use_flock):
    code = CHILD_PRELUDE + r'''
import time
from gluonseg.utils.filelock import FileLock
lock = FileLock(sys.argv[2], use_flock=sys.argv[3] == '1').acquire()
print('locked', flush=True)
time.sleep(60)
'''
    child = subprocess.Popen([sys.executable, '-c', code, REPO_ROOT, lock_path,
                              '1' if use_flock else '0'], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == 'locked'
    return child


@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='POSIX only')
@pytest.mark.parametrize('use_flock', [True, False], ids=['flock', 'lockfile-fallback'])
def test_lock_of_killed_process_does_not_block(tmp_path, use_flock):
    path = str(tmp_path / 'x.lock')
    child = _hold_lock_in_child(path, use_flock)
    try:
        with pytest.raises(FileLockTimeout):
            FileLock(path, timeout=0.2, use_flock=use_flock).acquire()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert os.path.exists(path)  # the killed process left its lock file behind
    with FileLock(path, timeout=2, use_flock=use_flock) as lock:
        assert lock.is_locked


def test_fallback_lock_older_than_stale_after_is_removed(tmp_path):
    path = str(tmp_path / 'x.lock')
    with open(path, 'w') as f:
        f.write('%d 0\n' % os.getpid())  # a live pid: only the age makes it stale
    with pytest.raises(FileLockTimeout):
        FileLock(path, timeout=0.1, use_flock=False).acquire()
    old = time.time() - 7200
    os.utime(path, (old, old))
    with FileLock(path, timeout=1, use_flock=False, stale_after=3600) as lock:
        assert lock.is_locked


# -- extract_archive --------------------------------------------------------------------------

def make_zip(path, members):
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in members:
            zf.writestr(name, data)


def add_tar_member(tf, name, data=b'', kind=tarfile.REGTYPE, linkname=''):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_extract_zip(tmp_path):
    archive = str(tmp_path / 'a.zip')
    make_zip(archive, [('a/b.txt', b'hello'), ('c.params', b'weights')])
    dest = tmp_path / 'out'
    paths = extract_archive(archive, str(dest))
    assert sorted(paths) == sorted([str(dest / 'a' / 'b.txt'), str(dest / 'c.params')])
    assert (dest / 'a' / 'b.txt').read_bytes() == b'hello'


@pytest.mark.parametrize('suffix,mode', [('.tar', 'w'), ('.tar.gz', 'w:gz'), ('.tgz', 'w:gz')])
def test_extract_tar(tmp_path, suffix, mode):
    archive = str(tmp_path / ('a' + suffix))
    with tarfile.open(archive, mode) as tf:
        add_tar_member(tf, 'dir', kind=tarfile.DIRTYPE)
        add_tar_member(tf, 'dir/x.txt', b'x')
        add_tar_member(tf, 'dir/link', kind=tarfile.SYMTYPE, linkname='x.txt')
    dest = tmp_path / 'out'
    paths = extract_archive(archive, str(dest))
    assert paths == [str(dest / 'dir'), str(dest / 'dir' / 'x.txt'), str(dest / 'dir' / 'link')]
    assert (dest / 'dir' / 'link').read_bytes() == b'x'


def assert_refused(archive, dest, member, outside):
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, str(dest))
    assert repr(member) in str(info.value) and archive in str(info.value)
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not outside.exists()


def test_zip_with_parent_entry_is_refused(tmp_path):
    archive = str(tmp_path / 'evil.zip')
    make_zip(archive, [('good.txt', b'ok'), ('../evil.txt', b'pwned')])
    assert_refused(archive, tmp_path / 'out', '../evil.txt', tmp_path / 'evil.txt')


def test_tar_with_absolute_path_is_refused(tmp_path):
    archive = str(tmp_path / 'evil.tar')
    outside = tmp_path / 'abs' / 'evil.txt'
    with tarfile.open(archive, 'w') as tf:
        add_tar_member(tf, 'good.txt', b'ok')
        add_tar_member(tf, str(outside), b'pwned')
    assert_refused(archive, tmp_path / 'out', str(outside), outside)


def test_tar_with_parent_entry_is_refused(tmp_path):
    archive = str(tmp_path / 'evil.tar.gz')
    with tarfile.open(archive, 'w:gz') as tf:
        add_tar_member(tf, 'good.txt', b'ok')
        add_tar_member(tf, 'a/../../evil.txt', b'pwned')
    assert_refused(archive, tmp_path / 'out', 'a/../../evil.txt', tmp_path / 'evil.txt')


@pytest.mark.parametrize('kind', [tarfile.SYMTYPE, tarfile.LNKTYPE])
@pytest.mark.parametrize('target', ['../secret', '/etc/passwd'])
def test_tar_link_pointing_outside_is_refused(tmp_path, kind, target):
    archive = str(tmp_path / 'evil.tar')
    with tarfile.open(archive, 'w') as tf:
        add_tar_member(tf, 'good.txt', b'ok')
        add_tar_member(tf, 'link', kind=kind, linkname=target)
    assert_refused(archive, tmp_path / 'out', 'link', tmp_path / 'secret')


def test_tar_write_through_symlink_chain_is_refused(tmp_path):
    # Each link looks harmless lexically; together 'x' points above dest.
    archive = str(tmp_path / 'evil.tar')
    with tarfile.open(archive, 'w') as tf:
        add_tar_member(tf, 'sub', kind=tarfile.DIRTYPE)
        add_tar_member(tf, 'sub/up', kind=tarfile.SYMTYPE, linkname='..')
        add_tar_member(tf, 'x', kind=tarfile.SYMTYPE, linkname='sub/up/..')
        add_tar_member(tf, 'x/evil.txt', b'pwned')
    assert_refused(archive, tmp_path / 'out', 'x', tmp_path / 'evil.txt')


def test_extract_refuses_write_through_existing_symlink(tmp_path):
    dest = tmp_path / 'out'
    dest.mkdir()
    (tmp_path / 'elsewhere').mkdir()
    os.symlink(str(tmp_path / 'elsewhere'), str(dest / 'link'))
    archive = str(tmp_path / 'a.zip')
    make_zip(archive, [('link/evil.txt', b'pwned')])
    with pytest.raises(UnsafeArchiveError, match='link/evil.txt'):
        extract_archive(archive, str(dest))
    assert list((tmp_path / 'elsewhere').iterdir()) == []
