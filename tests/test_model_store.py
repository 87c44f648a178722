"""gluonseg.model_zoo.model_store end to end against a local "repo" HTTP server."""
import io
import os
import zipfile

import pytest

from fixtures_data import call_in_threads, payload, sha1_of
from gluonseg.model_zoo import model_store
from gluonseg.model_zoo.model_store import (DEFAULT_REPO_URL, ModelStoreError, get_model_file,
                                            model_url, purge, repo_url)
from gluonseg.utils import download as dl
from gluonseg.utils.download import DownloadError, UnsafeArchiveError

NAME = 'fcn_resnet101_voc'


def zipped(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def publish(server, name, weights, member_data=None):
    """Serve ``weights`` in GluonCV's layout; returns (sha1, URL path of the zip)."""
    sha1 = sha1_of(weights)
    stem = '%s-%s' % (name, sha1[:8])
    url_path = '/gluon/models/%s.zip' % stem
    server.add(url_path, zipped([(stem + '.params',
                                  weights if member_data is None else member_data)]))
    return sha1, url_path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every cache and home folder under tmp_path; never the real ones."""
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('GLUONSEG_HOME', str(tmp_path / 'gluonseg'))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet'))
    monkeypatch.delenv('GLUONSEG_REPO_URL', raising=False)
    monkeypatch.delenv('MXNET_GLUON_REPO', raising=False)
    monkeypatch.setattr(dl, 'BACKOFF_BASE', 0.001)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / 'gluonseg' / 'models'


@pytest.fixture
def repo(file_server, monkeypatch):
    monkeypatch.setenv('GLUONSEG_REPO_URL', file_server.url('/'))
    return file_server


# -- URLs -------------------------------------------------------------------------------------

def test_published_url_scheme():
    sha1 = '12c2b9b3be7d4e133e52477150a9b3e616626a82'
    assert model_url(NAME, sha1) == (
        'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/'
        'gluon/models/fcn_resnet101_voc-12c2b9b3.zip')
    assert repo_url() == DEFAULT_REPO_URL
    assert model_store.model_file_name(NAME, sha1) == 'fcn_resnet101_voc-12c2b9b3.params'


def test_repo_url_environment_override(monkeypatch):
    monkeypatch.setenv('MXNET_GLUON_REPO', 'https://mxnet-mirror.example')
    assert repo_url() == 'https://mxnet-mirror.example/'
    monkeypatch.setenv('GLUONSEG_REPO_URL', 'https://gluonseg-mirror.example/repo')
    assert repo_url() == 'https://gluonseg-mirror.example/repo/'
    assert model_url('m', 'ab' * 20) == \
        'https://gluonseg-mirror.example/repo/gluon/models/m-abababab.zip'


# -- the store --------------------------------------------------------------------------------

def test_download_from_repo_then_cache_hit(repo, cache):
    weights = payload(64_000)
    sha1, url_path = publish(repo, NAME, weights)
    path = get_model_file(NAME, sha1, progress=False)
    assert path == str(cache / ('%s-%s.params' % (NAME, sha1[:8])))
    with open(path, 'rb') as f:
        assert f.read() == weights
    # Only the weights stay: no zip, no .part, no lock, no temporary unzip folder.
    assert os.listdir(str(cache)) == [os.path.basename(path)]
    assert len(repo.requests_for(url_path)) == 1
    assert get_model_file(NAME, sha1, progress=False) == path
    assert len(repo.served) == 1  # second call: the server saw no request


def test_explicit_root_wins_over_environment(repo, tmp_path, cache):
    weights = payload(64_000)
    sha1, _ = publish(repo, NAME, weights)
    root = tmp_path / 'explicit'
    path = get_model_file(NAME, sha1, root=str(root), progress=False)
    assert os.path.dirname(path) == str(root)
    assert not cache.exists()


@pytest.mark.parametrize('mxnet_home_set', [True, False])
def test_reuses_verified_file_from_gluoncv_cache(tmp_path, monkeypatch, closed_port_url,
                                                 cache, mxnet_home_set):
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)  # any download would fail
    if mxnet_home_set:
        gluoncv_dir = tmp_path / 'mxnet' / 'models'
    else:
        monkeypatch.delenv('MXNET_HOME')
        gluoncv_dir = tmp_path / 'home' / '.mxnet' / 'models'
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    gluoncv_dir.mkdir(parents=True)
    gluoncv_file = gluoncv_dir / ('%s-%s.params' % (NAME, sha1[:8]))
    gluoncv_file.write_bytes(weights)
    path = get_model_file(NAME, sha1, progress=False)
    assert path == str(cache / gluoncv_file.name)
    with open(path, 'rb') as f:
        assert f.read() == weights
    assert gluoncv_file.read_bytes() == weights  # copied, not moved
    assert os.listdir(str(cache)) == [gluoncv_file.name]


def test_gluoncv_file_with_wrong_sha1_is_not_used(repo, tmp_path, cache):
    weights = payload(64_000)
    sha1, url_path = publish(repo, NAME, weights)
    gluoncv_dir = tmp_path / 'mxnet' / 'models'
    gluoncv_dir.mkdir(parents=True)
    (gluoncv_dir / ('%s-%s.params' % (NAME, sha1[:8]))).write_bytes(b'truncated weights')
    path = get_model_file(NAME, sha1, progress=False)
    with open(path, 'rb') as f:
        assert f.read() == weights
    assert len(repo.requests_for(url_path)) == 1


def test_cached_file_with_wrong_sha1_is_downloaded_again(repo, cache):
    weights = payload(64_000)
    sha1, url_path = publish(repo, NAME, weights)
    cache.mkdir(parents=True)
    stale = cache / ('%s-%s.params' % (NAME, sha1[:8]))
    stale.write_bytes(b'partial or foreign weights')
    assert get_model_file(NAME, sha1, progress=False) == str(stale)
    assert stale.read_bytes() == weights
    assert len(repo.requests_for(url_path)) == 1


def test_corrupt_zip_is_downloaded_again_once(repo):
    weights = payload(64_000)
    sha1, url_path = publish(repo, NAME, weights)
    repo.add_faults(url_path, 'corrupt')  # first answer is not even a zip
    path = get_model_file(NAME, sha1, progress=False)
    with open(path, 'rb') as f:
        assert f.read() == weights
    assert [r.fault for r in repo.requests_for(url_path)] == ['corrupt', None]


def test_wrong_weights_raise_naming_file_and_hashes(repo, cache):
    weights, other = payload(64_000, seed=0), payload(64_000, seed=1)
    sha1, url_path = publish(repo, NAME, weights, member_data=other)
    with pytest.raises(ModelStoreError) as info:
        get_model_file(NAME, sha1, progress=False)
    message = str(info.value)
    file_name = '%s-%s.params' % (NAME, sha1[:8])
    assert file_name in message and sha1 in message and sha1_of(other) in message
    assert repo.url(url_path) in message
    assert 'cp <file> %s' % (cache / file_name) in message
    assert len(repo.requests_for(url_path)) == 2
    assert os.listdir(str(cache)) == []


def test_user_url_to_bare_params_file(file_server, cache):
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    url = file_server.add('/custom/my_weights.params', weights)
    path = get_model_file('my_model', sha1, url=url, progress=False)
    assert path == str(cache / ('my_model-%s.params' % sha1[:8]))
    with open(path, 'rb') as f:
        assert f.read() == weights
    assert os.listdir(str(cache)) == [os.path.basename(path)]


def test_user_url_to_zip_with_other_member_name(file_server, cache):
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    url = file_server.add('/custom/export.zip', zipped([('export/best.params', weights)]))
    path = get_model_file('my_model', sha1, url=url, progress=False)
    with open(path, 'rb') as f:
        assert f.read() == weights
    assert os.listdir(str(cache)) == [os.path.basename(path)]


def test_without_sha1_nothing_is_verified(file_server, cache):
    url = file_server.add('/custom/w.params', b'anything at all')
    path = get_model_file('my_model', None, url=url, progress=False)
    assert path == str(cache / 'my_model.params')
    assert get_model_file('my_model', None, url=url, progress=False) == path
    assert len(file_server.served) == 1


def test_without_sha1_or_url_needs_a_cached_file(cache):
    with pytest.raises(ValueError, match='my_model'):
        get_model_file('my_model', None)


def test_prefix_sha1_is_refused():
    with pytest.raises(ValueError, match='40 hex'):
        get_model_file(NAME, '12c2b9b3')


def test_offline_error_says_where_to_place_the_file(monkeypatch, closed_port_url, cache):
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)
    sha1 = '12c2b9b3be7d4e133e52477150a9b3e616626a82'
    with pytest.raises(ModelStoreError) as info:
        get_model_file(NAME, sha1, progress=False)
    assert isinstance(info.value, DownloadError)
    message = str(info.value)
    url = closed_port_url + 'gluon/models/fcn_resnet101_voc-12c2b9b3.zip'
    assert url in message
    assert 'fcn_resnet101_voc-12c2b9b3.params' in message and sha1 in message
    assert 'cp <file> %s' % (cache / 'fcn_resnet101_voc-12c2b9b3.params') in message
    assert info.value.url == url and info.value.sha1 == sha1
    assert os.listdir(str(cache)) == []


def test_missing_file_in_repo_fails_fast(repo, cache):
    sha1 = sha1_of(b'never published')
    with pytest.raises(ModelStoreError) as info:
        get_model_file(NAME, sha1, progress=False)
    assert info.value.status == 404
    assert '404' in str(info.value) and str(cache) in str(info.value)
    assert len(repo.served) == 1


def test_zip_escaping_the_cache_is_refused(repo, tmp_path, cache):
    weights = payload(64_000)
    sha1 = sha1_of(weights)
    stem = '%s-%s' % (NAME, sha1[:8])
    repo.add('/gluon/models/%s.zip' % stem, zipped([('../../%s.params' % stem, weights)]))
    with pytest.raises(UnsafeArchiveError):
        get_model_file(NAME, sha1, progress=False)
    assert os.listdir(str(cache)) == []
    assert not (tmp_path / 'gluonseg' / (stem + '.params')).exists()


def test_concurrent_calls_download_once(repo):
    weights = payload(200_000)
    sha1, url_path = publish(repo, NAME, weights)
    repo.chunk_delay = 0.01
    results, errors = call_in_threads(lambda: get_model_file(NAME, sha1, progress=False))
    assert errors == [] and len(set(results)) == 1 and len(results) == 3
    assert len(repo.requests_for(url_path)) == 1


def test_purge_removes_cached_weights(repo, cache):
    sha1, _ = publish(repo, NAME, payload(64_000))
    path = get_model_file(NAME, sha1, progress=False)
    (cache / 'other-00000000.params').write_bytes(b'w')
    (cache / 'notes.txt').write_text('kept')
    removed = purge()
    assert sorted(removed) == sorted([path, str(cache / 'other-00000000.params')])
    assert os.listdir(str(cache)) == ['notes.txt']
