"""Downloads that must end, and end with one clear message: unreachable hosts, trickling and
silent servers, damaged or oversized archives, caches that cannot be written to, files in the
cache with the wrong SHA-1, misspelled names, and backbones downloaded by default."""
import io
import logging
import os
import socket
import subprocess
import tarfile
import time
import traceback
import zipfile

import pytest

from fixtures_data import payload, sha1_of
from gluonseg.model_zoo import model_store
from gluonseg.model_zoo.model_store import ModelStoreError, get_model_file, purge
from gluonseg.utils import download as dl
from gluonseg.utils.download import (ArchiveTooLargeError, CorruptArchiveError, DownloadError,
                                     UnsafeArchiveError, download, extract_archive, sha1_file)
from gluonseg.utils.filelock import FileLock

NAME = 'fcn_resnet101_voc'


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Caches under tmp_path, no proxy, and none of the user's limits."""
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('GLUONSEG_HOME', str(tmp_path / 'gluonseg'))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet'))
    monkeypatch.setenv('NO_PROXY', '*')
    monkeypatch.setenv('no_proxy', '*')
    for var in ('GLUONSEG_REPO_URL', 'MXNET_GLUON_REPO', dl.ATTEMPT_TIMEOUT_ENV,
                dl.DEADLINE_ENV, dl.EXTRACT_MAX_SIZE_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(dl, 'BACKOFF_BASE', 0.001)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / 'gluonseg' / 'models'


@pytest.fixture
def silent_server_url():
    """A 127.0.0.1 port whose connections the kernel accepts but nobody ever answers."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(16)
    yield 'http://127.0.0.1:%d/' % sock.getsockname()[1]
    sock.close()


@pytest.fixture
def make_read_only():
    """Makes folders read-only, for root too (root ignores permission bits, not the
    immutable flag); restores them afterwards."""
    as_root = getattr(os, 'geteuid', lambda: -1)() == 0
    folders = []

    def make(folder):
        folder = str(folder)
        os.chmod(folder, 0o555)
        folders.append(folder)
        if as_root:
            try:
                done = subprocess.run(['chattr', '+i', folder], capture_output=True, text=True)
            except FileNotFoundError:
                pytest.skip('running as root, which ignores permission bits, without chattr')
            if done.returncode:
                pytest.skip('running as root, which ignores permission bits, and chattr +i '
                            'failed: %s' % done.stderr.strip())
    yield make
    for folder in folders:
        if as_root:
            subprocess.run(['chattr', '-i', folder], capture_output=True)
        os.chmod(folder, 0o755)


def zipped(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def weights_zip(name, sha1, weights, compression=zipfile.ZIP_STORED):
    """A zip in GluonCV's layout: one member ``{name}-{sha1[:8]}.params``."""
    return zipped([('%s-%s.params' % (name, sha1[:8]), weights)], compression)


def publish(server, name, sha1, archive):
    """Serve the zip ``archive`` where the store looks for ``name`` / ``sha1``; the URL
    path."""
    url_path = '/gluon/models/%s-%s.zip' % (name, sha1[:8])
    server.add(url_path, archive)
    return url_path


def one_message(err):
    """The error's message, after checking that it is what a user sees: a traceback of one
    exception (nothing chained) and a message of reasonable length, free of requests' own
    400-character retry text."""
    shown = ''.join(traceback.format_exception(type(err), err, err.__traceback__))
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    assert 'During handling' not in shown and 'direct cause' not in shown
    assert len(str(err)) < 2000 and 'Max retries exceeded' not in str(err)
    return str(err)


def short_lines(caplog):
    """The warnings logged: each a single short line."""
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert all('\n' not in line and len(line) < 250 for line in lines), lines
    return lines


# -- unreachable hosts fail at once -----------------------------------------------------------

@pytest.mark.fault('connection refused on every attempt')
def test_refused_connection_fails_at_once(tmp_path, closed_port_url, caplog):
    url = closed_port_url + 'f.bin'
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=5)
    # The real backoff (1 s, 2 s, ...) was not waited for: a refusal is not retried.
    assert time.monotonic() - start < 1.0
    message = one_message(info.value)
    assert url in message and 'refused the connection' in message
    assert '\n' not in message
    assert isinstance(info.value.cause, Exception)
    assert short_lines(caplog) == []
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.fault('host name that does not resolve')
def test_unresolvable_host_fails_at_once(tmp_path, caplog):
    url = 'http://gluonseg-test.invalid/f.bin'  # .invalid never resolves (RFC 2606)
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=5)
    assert time.monotonic() - start < 10.0  # one lookup, no backoff of 1 + 2 + 4 + 8 + 16 s
    message = one_message(info.value)
    assert "the host name 'gluonseg-test.invalid' does not resolve" in message
    assert url in message
    assert short_lines(caplog) == []


# -- time limits ------------------------------------------------------------------------------

@pytest.mark.fault('server trickling one byte at a time')
def test_trickling_server_is_cut_for_low_speed_and_resumed_later(
        tmp_path, trickle_server, monkeypatch, caplog, fast_backoff):
    monkeypatch.setattr(dl, 'SPEED_WINDOW', 0.3)  # 1 KiB/s over 0.3 s; the server sends 20 B/s
    data = payload(5_000)
    url = trickle_server.add('/f.bin', data)
    target = tmp_path / 'f.bin'
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, str(target), sha1=sha1_of(data), progress=False, retries=2)
    assert time.monotonic() - start < 5.0
    message = one_message(info.value)
    assert 'gave up after 3 attempts' in message and 'too slow' in message
    assert 'bytes/s' in message and url in message
    part = tmp_path / 'f.bin.part'
    kept = part.read_bytes()
    assert 0 < len(kept) < len(data) and data.startswith(kept)  # what came is kept
    assert 'calling again resumes them' in message and str(part) in message
    first, second, third = trickle_server.requests_for('/f.bin')
    assert first.range_start is None and 0 < second.range_start < third.range_start
    assert len(short_lines(caplog)) == 2  # one line per retry

    trickle_server.trickle_delay = 0  # the server recovers: the next call resumes
    download(url, str(target), sha1=sha1_of(data), progress=False)
    assert target.read_bytes() == data
    assert trickle_server.requests_for('/f.bin')[-1].range_start == len(kept)


@pytest.mark.fault('trickling server, stopped by the overall deadline')
def test_trickle_that_keeps_progressing_ends_at_the_deadline(tmp_path, trickle_server,
                                                             monkeypatch, fast_backoff):
    monkeypatch.setenv(dl.ATTEMPT_TIMEOUT_ENV, '0.2')
    monkeypatch.setenv(dl.DEADLINE_ENV, '1')
    data = payload(5_000)
    url = trickle_server.add('/f.bin', data)
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=1)
    elapsed = time.monotonic() - start
    assert 0.9 < elapsed < 3.0
    message = one_message(info.value)
    assert 'GLUONSEG_DOWNLOAD_DEADLINE' in message
    # Each cut attempt brought new bytes, so none used up the single retry.
    requests = trickle_server.requests_for('/f.bin')
    assert len(requests) >= 3
    assert 'after %d attempts' % len(requests) in message
    assert data.startswith((tmp_path / 'f.bin.part').read_bytes())


@pytest.mark.fault('slow download split by the attempt timeout')
def test_attempt_timeout_resumes_a_progressing_download(tmp_path, file_server, monkeypatch):
    monkeypatch.setenv(dl.ATTEMPT_TIMEOUT_ENV, '0.2')
    file_server.chunk_delay = 0.05  # 16 KiB per 0.05 s: 200 KB take ~0.6 s
    data = payload(200_000)
    url = file_server.add('/f.bin', data)
    download(url, str(tmp_path / 'f.bin'), sha1=sha1_of(data), progress=False, retries=0)
    assert (tmp_path / 'f.bin').read_bytes() == data
    requests = file_server.requests_for('/f.bin')
    assert len(requests) >= 3
    starts = [r.range_start for r in requests[1:]]
    assert all(r.status == 206 for r in requests[1:]) and starts == sorted(set(starts))


@pytest.mark.fault('server that accepts connections and never answers')
def test_silent_server_ends_at_the_deadline(tmp_path, silent_server_url, monkeypatch,
                                            fast_backoff):
    monkeypatch.setenv(dl.DEADLINE_ENV, '0.5')
    url = silent_server_url + 'f.bin'
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path / 'f.bin'), progress=False, retries=5)
    assert time.monotonic() - start < 2.0  # the read timeout is 30 s
    message = one_message(info.value)
    assert 'sent nothing' in message and 'GLUONSEG_DOWNLOAD_DEADLINE' in message


@pytest.mark.parametrize('value', ['ten', '0', '-5'])
def test_bad_time_limit_is_refused_naming_the_variable(tmp_path, file_server, monkeypatch,
                                                       value):
    monkeypatch.setenv(dl.DEADLINE_ENV, value)
    url = file_server.add('/f.bin', b'data')
    with pytest.raises(ValueError, match='GLUONSEG_DOWNLOAD_DEADLINE=%r' % value):
        download(url, str(tmp_path / 'f.bin'), progress=False)
    assert file_server.served == []


# -- archives ---------------------------------------------------------------------------------

def assert_nothing_extracted(dest):
    assert not dest.exists() or list(dest.iterdir()) == []


@pytest.mark.fault('zip member larger than the size limit')
def test_member_above_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(dl.EXTRACT_MAX_SIZE_ENV, '4K')
    archive = tmp_path / 'a.zip'
    archive.write_bytes(zipped([('small.txt', b'ok'), ('big.bin', payload(5_000))]))
    with pytest.raises(ArchiveTooLargeError) as info:
        extract_archive(str(archive), str(tmp_path / 'out'))
    message = str(info.value)
    assert "'big.bin'" in message and '5,000 bytes' in message and '4,096 bytes' in message
    assert 'GLUONSEG_EXTRACT_MAX_SIZE' in message and str(archive) in message
    assert isinstance(info.value, UnsafeArchiveError)
    assert_nothing_extracted(tmp_path / 'out')


def test_total_above_size_limit_is_refused(tmp_path):
    archive = tmp_path / 'a.tar'
    with tarfile.open(str(archive), 'w') as tf:
        for i in range(3):
            info = tarfile.TarInfo('part%d.bin' % i)
            info.size = 600
            tf.addfile(info, io.BytesIO(payload(600, seed=i)))
    with pytest.raises(ArchiveTooLargeError) as info:
        extract_archive(str(archive), str(tmp_path / 'out'), max_size=1000)
    message = str(info.value)
    assert 'its 3 members would expand to 1.8 KiB (1,800 bytes) in all' in message
    assert 'more than the limit of 1,000 bytes (max_size)' in message
    assert info.value.member is None
    assert_nothing_extracted(tmp_path / 'out')


@pytest.mark.fault('zip bomb (member expanding 1000x)')
def test_zip_bomb_is_refused_by_ratio(tmp_path):
    archive = tmp_path / 'bomb.zip'
    archive.write_bytes(zipped([('zeros.bin', bytes(8 << 20))], zipfile.ZIP_DEFLATED))
    assert archive.stat().st_size < 100_000
    with pytest.raises(ArchiveTooLargeError) as info:
        extract_archive(str(archive), str(tmp_path / 'out'))
    message = str(info.value)
    assert "'zeros.bin'" in message and '8.0 MiB' in message and 'times' in message
    assert_nothing_extracted(tmp_path / 'out')


@pytest.mark.fault('tar.gz bomb')
def test_tar_bomb_is_refused_by_ratio(tmp_path):
    archive = tmp_path / 'bomb.tar.gz'
    with tarfile.open(str(archive), 'w:gz') as tf:
        info = tarfile.TarInfo('zeros.bin')
        info.size = 8 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(ArchiveTooLargeError, match='its members would expand'):
        extract_archive(str(archive), str(tmp_path / 'out'))
    assert_nothing_extracted(tmp_path / 'out')


def test_compressible_data_under_the_ratio_is_extracted(tmp_path):
    # ~5x, like COCO's annotation JSON: well under the default bound.
    text = b''.join(b'{"id": %d, "bbox": [%d, 20, 30, 40]}, ' % (i, i % 640)
                    for i in range(60_000))
    archive = tmp_path / 'a.zip'
    archive.write_bytes(zipped([('annotations.json', text)], zipfile.ZIP_DEFLATED))
    assert len(text) > 10 * archive.stat().st_size / 3
    extract_archive(str(archive), str(tmp_path / 'out'))
    assert (tmp_path / 'out' / 'annotations.json').read_bytes() == text


@pytest.mark.fault('zip with a bad CRC')
def test_damaged_zip_raises_corrupt_archive_error(tmp_path):
    good = zipped([('a.txt', b'first'), ('b.bin', payload(10_000))])
    start = good.index(payload(10_000)[:64])
    damaged = bytearray(good)
    damaged[start + 5000] ^= 0xFF
    archive = tmp_path / 'a.zip'
    archive.write_bytes(bytes(damaged))
    with pytest.raises(CorruptArchiveError) as info:
        extract_archive(str(archive), str(tmp_path / 'out'))
    assert str(archive) in str(info.value) and "member 'b.bin'" in str(info.value)
    assert 'CRC' in str(info.value)


@pytest.mark.fault('truncated tar.gz')
def test_truncated_tar_gz_raises_corrupt_archive_error(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tf:
        info = tarfile.TarInfo('x.bin')
        info.size = 100_000
        tf.addfile(info, io.BytesIO(payload(100_000)))
    archive = tmp_path / 'a.tar.gz'
    archive.write_bytes(buf.getvalue()[:60_000])
    with pytest.raises(CorruptArchiveError, match='a.tar.gz is corrupt'):
        extract_archive(str(archive), str(tmp_path / 'out'))


# -- the model store --------------------------------------------------------------------------

@pytest.mark.fault('resumed .part holding garbage')
def test_corrupt_resumed_zip_is_downloaded_again_from_zero(file_server, monkeypatch, cache,
                                                           fast_backoff):
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    url_path = publish(file_server, NAME, sha1, weights_zip(NAME, sha1, weights))
    cache.mkdir(parents=True)
    # An earlier, interrupted run left a .part whose bytes are not the zip's.
    garbage = payload(30_000, seed=7)
    (cache / ('%s-%s.zip.part' % (NAME, sha1[:8]))).write_bytes(garbage)
    path = get_model_file(NAME, sha1, progress=False)
    with open(path, 'rb') as f:
        assert f.read() == weights
    resumed, fresh = file_server.requests_for(url_path)
    assert (resumed.status, resumed.range_start) == (206, len(garbage))
    assert (fresh.status, fresh.range_start) == (200, None)
    assert os.listdir(str(cache)) == [os.path.basename(path)]


@pytest.mark.fault('published zip with a bad CRC')
def test_zip_that_never_reads_raises_model_store_error(file_server, monkeypatch, cache):
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    damaged = bytearray(weights_zip(NAME, sha1, weights))
    damaged[len(damaged) // 2] ^= 0xFF
    url_path = publish(file_server, NAME, sha1, bytes(damaged))
    with pytest.raises(ModelStoreError) as info:
        get_model_file(NAME, sha1, progress=False)
    message = one_message(info.value)
    assert 'cannot be read' in message and 'CRC' in message and 'downloaded twice' in message
    assert len(file_server.requests_for(url_path)) == 2
    assert os.listdir(str(cache)) == []


@pytest.mark.fault('weight zip declaring a huge member')
def test_weight_zip_expanding_too_much_is_refused(file_server, monkeypatch, cache):
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    sha1 = sha1_of(b'real weights')
    # 40 MiB from a ~40 KB zip: far beyond what float weights compress to, below the
    # general bound of extract_archive.
    publish(file_server, NAME, sha1,
            weights_zip(NAME, sha1, bytes(40 << 20), zipfile.ZIP_DEFLATED))
    with pytest.raises(ArchiveTooLargeError) as info:
        get_model_file(NAME, sha1, progress=False)
    message = str(info.value)
    assert repr('%s-%s.params' % (NAME, sha1[:8])) in message and '40.0 MiB' in message
    assert 'limit of %g times' % model_store.WEIGHTS_MAX_RATIO in message
    assert os.listdir(str(cache)) == []


@pytest.mark.fault('hand-placed weight file with the wrong SHA-1, offline')
def test_hand_placed_wrong_file_is_moved_aside_and_named(closed_port_url, monkeypatch, cache):
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)
    sha1 = '12c2b9b3be7d4e133e52477150a9b3e616626a82'
    cache.mkdir(parents=True)
    placed = cache / ('%s-%s.params' % (NAME, sha1[:8]))
    users_file = payload(10_000, seed=3)
    placed.write_bytes(users_file)
    start = time.monotonic()
    with pytest.raises(ModelStoreError) as info:
        get_model_file(NAME, sha1, progress=False)
    assert time.monotonic() - start < 1.0  # refused connection: no backoff
    message = one_message(info.value)
    rejected = cache / (placed.name + '.rejected')
    assert 'A file was already at %s' % placed in message
    assert sha1_of(users_file) in message and sha1 in message
    assert 'moved to %s' % rejected in message and 'refused the connection' in message
    assert 'cp <file> %s' % placed in message
    assert rejected.read_bytes() == users_file and not placed.exists()


@pytest.mark.fault('hand-placed weight file with the wrong SHA-1, online')
def test_wrong_cached_file_is_kept_aside_when_the_download_succeeds(file_server, monkeypatch,
                                                                    cache, caplog):
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    publish(file_server, NAME, sha1, weights_zip(NAME, sha1, weights))
    cache.mkdir(parents=True)
    placed = cache / ('%s-%s.params' % (NAME, sha1[:8]))
    placed.write_bytes(b'an older download, cut short')
    assert get_model_file(NAME, sha1, progress=False) == str(placed)
    assert sha1_file(str(placed)) == sha1
    rejected = cache / (placed.name + '.rejected')
    assert rejected.read_bytes() == b'an older download, cut short'
    assert 'moved to %s' % rejected in caplog.text
    assert str(rejected) in purge()


@pytest.mark.fault('read-only weight cache ($GLUONSEG_HOME)')
def test_read_only_cache_names_gluonseg_home(file_server, monkeypatch, cache, tmp_path,
                                             make_read_only):
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    publish(file_server, NAME, sha1, weights_zip(NAME, sha1, weights))
    cache.mkdir(parents=True)
    make_read_only(cache)
    with pytest.raises(PermissionError) as info:
        get_model_file(NAME, sha1, progress=False)
    message = one_message(info.value)
    assert 'The weight cache %s' % cache in message
    assert 'GLUONSEG_HOME=%s' % (tmp_path / 'gluonseg') in message
    assert str(cache / ('%s-%s.lock' % (NAME, sha1[:8]))) in message
    assert file_server.served == []


@pytest.mark.fault('read-only weight cache (root=)')
def test_read_only_root_names_the_argument(tmp_path, make_read_only, closed_port_url,
                                           monkeypatch):
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)
    parent = tmp_path / 'shared'
    parent.mkdir()
    make_read_only(parent)
    root = str(parent / 'models')  # cannot even be created
    with pytest.raises(PermissionError) as info:
        get_model_file(NAME, '12c2b9b3be7d4e133e52477150a9b3e616626a82', root=root,
                       progress=False)
    assert 'the root=%r argument' % root in str(info.value)
    assert root in str(info.value)


def test_verified_file_in_read_only_cache_is_used(cache, make_read_only, closed_port_url,
                                                  monkeypatch):
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)
    weights = payload(1000)
    sha1 = sha1_of(weights)
    cache.mkdir(parents=True)
    (cache / ('%s-%s.params' % (NAME, sha1[:8]))).write_bytes(weights)
    make_read_only(cache)
    assert get_model_file(NAME, sha1, progress=False).endswith('.params')


@pytest.mark.fault('lock file in a read-only folder')
def test_lock_in_read_only_folder_names_the_lock_file(tmp_path, make_read_only):
    make_read_only(tmp_path)
    path = str(tmp_path / 'x.lock')
    with pytest.raises(PermissionError) as info:
        FileLock(path, timeout=0).acquire()
    assert 'Cannot create the lock file %s' % path in str(info.value)
    assert 'must be writable' in str(info.value)


# -- names and backbones ----------------------------------------------------------------------

@pytest.mark.fault('misspelled model name on the command line')
def test_cli_download_of_misspelled_name_suggests_and_downloads_nothing(file_server,
                                                                        monkeypatch, capsys):
    from gluonseg.cli import main
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    # The first name is right: it is not downloaded either, every name is checked first.
    assert main(['download', NAME, 'fcn_resnet101_vco']) == 2
    err = capsys.readouterr().err
    assert err.startswith("gluonseg download: error: Unknown model 'fcn_resnet101_vco'")
    assert 'Did you mean: %s' % NAME in err and 'Traceback' not in err
    assert file_server.served == []


@pytest.mark.fault('offline, with the default pretrained_base=True')
def test_offline_backbone_download_names_pretrained_base(closed_port_url, monkeypatch):
    import gluonseg
    monkeypatch.setattr(dl, 'BACKOFF_BASE', 1.0)
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)
    start = time.monotonic()
    with pytest.raises(ModelStoreError) as info:
        gluonseg.get_model('fcn_resnet18_shapes', pretrained=False)
    assert time.monotonic() - start < 5.0
    message = one_message(info.value)
    assert message.startswith('pretrained_base=True asks for the ImageNet weights of the '
                              "backbone 'resnet18_v1b'")
    assert 'Pass pretrained_base=False' in message
    assert closed_port_url + 'gluon/models/resnet18_v1b-2d9d980c.zip' in message
    assert 'refused the connection' in message
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained=False, pretrained_base=False)
    assert net is not None
