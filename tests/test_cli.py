"""The gluonseg console command."""
import pytest

from gluonseg.cli import main


def test_models_lists_matching_names(capsys):
    assert main(['models', 'psp_*', '--pretrained', 'yes']) == 0
    out = capsys.readouterr().out
    assert 'psp_resnet101_citys' in out and 'mIoU 79.9' in out
    assert 'fcn_' not in out and 'psp_resnet152_voc' not in out


def test_models_with_no_match_fails(capsys):
    assert main(['models', 'nothing*']) == 1


def test_download_offline_names_the_url(monkeypatch, tmp_path, closed_port_url, capsys):
    monkeypatch.setenv('GLUONSEG_HOME', str(tmp_path))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet'))
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)
    import gluonseg.utils.download as download
    monkeypatch.setattr(download, 'BACKOFF_BASE', 0.001)
    with pytest.raises(IOError) as err:
        main(['download', 'fcn_resnet101_voc'])
    assert closed_port_url + 'gluon/models/fcn_resnet101_voc-12c2b9b3.zip' in str(err.value)
    assert 'fcn_resnet101_voc-12c2b9b3.params' in str(err.value)
