"""The gluonseg console command."""
import re

import pytest

from gluonseg.cli import main
from test_demo import load_script


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
    assert main(['download', 'fcn_resnet101_voc']) == 1
    err = capsys.readouterr().err
    assert err.startswith('gluonseg download: error: ') and 'Traceback' not in err
    assert closed_port_url + 'gluon/models/fcn_resnet101_voc-12c2b9b3.zip' in err
    assert 'fcn_resnet101_voc-12c2b9b3.params' in err


def help_blocks(main_function, argv, capsys):
    """The paragraphs of the ``--help`` text printed by ``main_function(argv + ['--help'])``."""
    with pytest.raises(SystemExit) as done:
        main_function(argv + ['--help'])
    assert done.value.code == 0
    return capsys.readouterr().out.split('\n\n')


def listed_options(blocks):
    return re.findall(r'^  (-[-\w]+)', '\n\n'.join(blocks), re.M)


@pytest.mark.parametrize('command, script', [('train', 'train.py'), ('eval', 'test.py')])
def test_tool_commands_print_the_help_of_their_scripts(command, script, monkeypatch, capsys):
    monkeypatch.setenv('COLUMNS', '100')  # argparse wraps to the terminal's width
    ours = help_blocks(main, [command], capsys)
    theirs = help_blocks(load_script('segmentation', script).main, [], capsys)
    # After the usage and the description, the options: the same, formatted the same
    assert listed_options(ours[2:]) == listed_options(theirs[2:])
    assert len(listed_options(ours)) > 15 and '(default: ' in '\n\n'.join(ours[2:])
    assert ours[2:] == theirs[2:]


def test_predict_lists_the_options_of_both_demos(monkeypatch, capsys):
    monkeypatch.setenv('COLUMNS', '100')
    ours = listed_options(help_blocks(main, ['predict'], capsys))
    semantic = listed_options(help_blocks(load_script('segmentation', 'demo.py').main, [],
                                          capsys))
    instance = listed_options(help_blocks(load_script('instance', 'demo_mask_rcnn.py').main,
                                          [], capsys))
    assert set(semantic) < set(ours) and set(instance) < set(ours)
    assert set(ours) == set(semantic) | set(instance)
