"""The families beyond FCN, PSPNet and DeepLabV3 through the command-line tools: a tiny
`gluonseg train` on Shapes, then `gluonseg eval` of its checkpoint, single- and multi-scale,
and `gluonseg predict` (each family's golden, export and optimize checks are in its own
test file)."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from gluonseg.cli import main as cli_main

# ICNet's 1/32 branch needs crops of 96 or more (1 x 1 below that).
FAMILIES = {'danet_resnet18_shapes': 48, 'icnet_resnet18_shapes': 96, 'fastscnn_shapes': 48}
# DANet and ICNet run in the slow suite: together they add about 0.45 GB to the default
# run's memory, which must stay under 4 GB.
SLOW = ('danet_resnet18_shapes', 'icnet_resnet18_shapes')


@pytest.mark.parametrize('model', [pytest.param(name, marks=pytest.mark.slow) if name in SLOW
                                   else name for name in sorted(FAMILIES)])
def test_train_eval_and_predict_from_the_command_line(model, tmp_path, capsys):
    size = str(FAMILIES[model])
    save_dir = str(tmp_path / 'run')
    assert cli_main(['train', '--model', model, '--train-length', '8', '--val-length', '4',
                     '--base-size', size, '--crop-size', size, '--epochs', '1',
                     '--batch-size', '4', '--no-progress', '--quiet',
                     '--save-dir', save_dir]) == 0
    out = capsys.readouterr().out
    final = json.loads(re.search(r'^FINAL (.*)$', out, re.M).group(1))
    assert 0 <= final['mIoU'] <= 1
    checkpoint = os.path.join(save_dir, 'latest.ckpt')
    scores = str(tmp_path / 'eval.json')
    assert cli_main(['eval', checkpoint, '--output', scores, '--no-progress']) == 0
    with open(scores) as f:  # the run's own validation: the same mIoU
        assert json.load(f)['mIoU'] == pytest.approx(final['mIoU'], abs=1e-6)
    assert cli_main(['eval', checkpoint, '--multi-scale', '--scales', '0.75', '1.25',
                     '--output', scores, '--no-progress']) == 0
    with open(scores) as f:
        assert 0 <= json.load(f)['mIoU'] <= 1
    image = tmp_path / 'scene.png'
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (61, 83, 3), np.uint8)).save(image)
    assert cli_main(['predict', str(image), '--checkpoint', checkpoint,
                     '--output', str(tmp_path / 'pred')]) == 0
    assert Image.open(tmp_path / 'pred' / 'scene_mask.png').size == (83, 61)
