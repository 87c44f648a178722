"""The gluonseg console command."""
import functools
import importlib
import json
import os
import re
import subprocess
import sys

import pytest

from gluonseg.cli import main
from gluonseg.model_zoo import list_models
from test_demo import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_models_lists_matching_names(capsys):
    assert main(['models', 'psp_*', '--pretrained', 'yes']) == 0
    out = capsys.readouterr().out
    assert 'psp_resnet101_citys' in out and 'mIoU 79.9' in out
    assert 'fcn_' not in out and 'psp_resnet152_voc' not in out


def test_models_with_no_match_fails(capsys):
    assert main(['models', 'nothing*']) == 1
    captured = capsys.readouterr()
    assert captured.out == '' and "no model matches 'nothing*'" in captured.err


def test_models_takes_a_plain_word_as_a_part_of_the_name(capsys):
    assert main(['models', 'shapes']) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list_models('*shapes*')
    assert 'fcn_resnet18_shapes' in listed and 'psp_resnet50_shapes' in listed
    # A wildcard pattern is matched as before: the whole name.
    assert main(['models', 'shapes*']) == 1


@pytest.mark.fault('misspelled model name or word given to gluonseg models')
def test_models_without_a_match_suggests_close_names(capsys):
    assert main(['models', 'shapez']) == 1
    assert "no model matches 'shapez'. Did you mean: shapes" in capsys.readouterr().err
    assert main(['models', 'deeplab_resnet101_vocc']) == 1
    assert "Did you mean: deeplab_resnet101_voc," in capsys.readouterr().err
    # Names match, the filters leave none: the message says so instead of guessing.
    assert main(['models', 'psp', '--task', 'instance']) == 1
    err = capsys.readouterr().err
    assert "no model matches 'psp' with --task instance" in err and 'Did you mean' not in err


def test_models_columns_fit_the_longest_name(capsys):
    assert main(['models']) == 0
    lines = capsys.readouterr().out.splitlines()
    longest = max(len(line.split()[0]) for line in lines)
    assert longest == len('deeplab_v3b_plus_wideresnet_citys')
    # Every row's second column starts at the same place, after the longest name.
    assert {len(re.match(r'\S+ +', line).group()) for line in lines} == {longest + 2}
    assert len({re.search(r' \d+ classes ', line).end() for line in lines}) == 1


# Runs in a fresh interpreter: nothing of this test process is imported there.
IMPORTS_OF_HELP = r"""
import contextlib, io, json, sys
import gluonseg.cli
seen = {}
for argv in (['--help'], ['models', '--help'], ['download', '--help'], ['env', '--help'],
             ['predict', '--help'], ['train', '--help'], ['eval', '--help'],
             ['train', '--model', 'mask_rcnn_fpn_resnet18_v1b_small', '--help'],
             ['eval', '--task', 'instance', '--help'], ['models'],
             ['models', 'deeplab', '--pretrained', 'yes']):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            status = gluonseg.cli.main(argv)
        except SystemExit as done:
            status = done.code
    seen[' '.join(argv)] = [status, out.getvalue().split(None, 1)[0], 'mxnet' in sys.modules]
seen['model files'] = sorted(m for m in sys.modules if m.startswith('gluonseg.model_zoo.')
                             and m not in ('gluonseg.model_zoo.registry',
                                           'gluonseg.model_zoo.weights_table'))
# The checks of a command line (presets filled, the task chosen) need no MXNet either.
from gluonseg.tools import evaluate_options, predict_options, train_options
checked = {'train': train_options.parse_args(['--model', 'mask_rcnn_fpn_resnet18_v1b_small']),
           'eval': evaluate_options.parse_args(['--model', 'fcn_resnet18_shapes', '--pretrained'])}
seen['checked'] = [{name: args.task for name, args in checked.items()},
                   checked['train'].lr_warmup, 'mxnet' in sys.modules]
predict = predict_options.parse_args(['a.jpg', '--model', 'fcn_resnet18_shapes', '--pretrained'])
seen['predict checked'] = [predict.inputs, predict.alpha, 'mxnet' in sys.modules]
import gluonseg
seen['import gluonseg'] = [0, str('get_model' in dir(gluonseg)), 'mxnet' in sys.modules]
gluonseg.get_model('resnet18_v1b')
seen['get_model'] = [0, 'built', 'mxnet' in sys.modules]
print(json.dumps(seen))
"""


def run_fresh(code, timeout=300):
    """What ``code`` prints as JSON, run in a fresh interpreter (nothing of this test process
    imported there)."""
    run = subprocess.run([sys.executable, '-c', code], cwd=ROOT, text=True,
                         capture_output=True, timeout=timeout)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_help_models_and_import_gluonseg_do_not_import_mxnet():
    seen = run_fresh(IMPORTS_OF_HELP)
    for step in ('--help', 'models --help', 'download --help', 'env --help', 'predict --help',
                 'train --help', 'eval --help',
                 'train --model mask_rcnn_fpn_resnet18_v1b_small --help',
                 'eval --task instance --help'):
        assert seen[step] == [0, 'usage:', False], step
    assert seen['checked'] == [{'train': 'instance', 'eval': 'semantic'}, 100, False]
    assert seen['predict checked'] == [['a.jpg'], 0.5, False]
    # Listing reads the weights table: no MXNet, no model file.
    assert seen['models'] == [0, 'danet_resnet101_ade', False]
    assert seen['models deeplab --pretrained yes'] == [0, 'deeplab_resnest101_ade', False]
    assert seen['model files'] == []
    assert seen['import gluonseg'] == [0, 'True', False]
    # Control: building a model does import it.
    assert seen['get_model'] == [0, 'built', True]


def test_unknown_attribute_of_gluonseg_is_an_attribute_error():
    import gluonseg
    with pytest.raises(AttributeError, match="module 'gluonseg' has no attribute 'get_modle'"):
        gluonseg.get_modle
    assert gluonseg.model_zoo.registry.get_model is gluonseg.get_model


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


def option_entries(blocks):
    """The help of each option (its lines joined) in the paragraphs of a ``--help`` text."""
    text = '\n\n'.join(blocks)
    return [' '.join(entry.split()) for entry in re.split(r'\n(?=  \S)', text)
            if entry.startswith('  ')]


def instance_main(tool_name):
    """``main`` of a tool in its Mask R-CNN form (the options of scripts/instance)."""
    tool = importlib.import_module('gluonseg.tools.' + tool_name)
    return functools.partial(tool.main, task='instance')


@pytest.mark.parametrize('command, tool_name', [('train', 'train'), ('eval', 'evaluate')])
def test_train_and_eval_take_the_options_of_both_tasks(command, tool_name, monkeypatch,
                                                        capsys):
    monkeypatch.setenv('COLUMNS', '100')
    tool = importlib.import_module('gluonseg.tools.' + tool_name)
    ours = listed_options(help_blocks(main, [command], capsys))
    semantic = listed_options(help_blocks(functools.partial(tool.main, task='semantic'), [],
                                          capsys))
    instance = listed_options(help_blocks(instance_main(tool_name), [], capsys))
    assert set(ours) == set(semantic) | set(instance) | {'--task'}
    assert len(set(semantic) - set(instance)) > 5 and len(set(instance) - set(semantic)) > 5
    # the options both tasks have are the same options
    shared = {'--model', '--dataset', '--root', '--gpus', '--no-progress'}
    if command == 'train':
        shared |= {'--init-from', '--batch-size', '--epochs', '--lr', '--wd', '--momentum',
                   '--workers', '--kvstore', '--amp', '--accumulate', '--seed', '--resume',
                   '--save-dir', '--max-iterations', '--check-inputs'}
    assert shared <= set(semantic) & set(instance)


@pytest.mark.parametrize('command, script', [
    ('train', ('segmentation', 'train.py')), ('eval', ('segmentation', 'test.py')),
    ('predict', ('segmentation', 'demo.py')), (None, ('instance', 'demo_mask_rcnn.py')),
    (None, 'train'), (None, 'evaluate')])
def test_help_says_each_default_once(command, script, monkeypatch, capsys):
    monkeypatch.setenv('COLUMNS', '100')
    run = instance_main(script) if isinstance(script, str) else load_script(*script).main
    texts = [help_blocks(run, [], capsys)]
    if command:
        texts.append(help_blocks(main, [command], capsys))
    for blocks in texts:
        entries = option_entries(blocks[2:])
        assert len(entries) > 8
        for entry in entries:
            assert len(re.findall(r'\bdefault\b', entry, re.I)) <= 1, entry
            assert '(default: None)' not in entry and '(default: )' not in entry, entry
            if entry.split()[0] in ('--quiet', '--aux', '--no-progress', '--syncbn'):
                assert 'default' not in entry, entry  # a flag is off unless given
        # Values set in the parser are still shown.
        assert any(re.search(r'\(default: [\w.]+\)$', entry) for entry in entries)
