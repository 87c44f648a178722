"""Training curves: fit() ends by drawing curves.png from the run's log and metrics; the
function works alone (and from the command line) on any run folder, of semantic or Mask R-CNN
records; without matplotlib the run goes on with a warning."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from gluonseg.utils import plot
from fixtures_training import tiny_net, tiny_trainer


def png(path):
    with Image.open(path) as image:
        assert image.format == 'PNG'
        image.load()
        return np.asarray(image.convert('RGB'))


def test_fit_draws_the_loss_and_miou_curves(tmp_path):
    trainer = tiny_trainer(tiny_net(), save_dir=str(tmp_path), log_interval=2)
    trainer.fit()  # 2 epochs of 6 iterations, validated after each
    losses, records = plot.read_training_curves(str(tmp_path))
    assert [i for i, _ in losses] == [2, 4, 6, 8, 10, 12]
    assert losses[-1][1] == pytest.approx(trainer.last_loss, abs=1e-4)
    assert [r['epoch'] for r in records] == [1, 2]
    pixels = png(tmp_path / 'curves.png')
    assert pixels.shape == (400, 1000, 3)                # 10 x 4 inches at 100 dpi
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # something is drawn
    with open(tmp_path / 'train.log') as f:
        assert 'Training curves: %s' % (tmp_path / 'curves.png') in f.read()


def test_a_new_run_in_the_folder_of_an_earlier_one_draws_only_its_own_curves(tmp_path):
    first = tiny_trainer(tiny_net(), save_dir=str(tmp_path), log_interval=2)
    first.fit()  # 12 iterations, validated at 6 and 12
    second = tiny_trainer(tiny_net(seed=1), save_dir=str(tmp_path), log_interval=2, lr=0.01)
    second.fit(max_iterations=6)  # a new run (not resumed) in the same folder
    losses, records = plot.read_training_curves(str(tmp_path))
    # train.log holds both runs; the curves are the second one's
    assert [i for i, _ in losses] == [2, 4, 6]
    assert losses[-1][1] == pytest.approx(second.last_loss, abs=1e-4)
    assert [(r['iteration'], r['lr']) for r in records] == [
        (6, pytest.approx(second.lr_scheduler(5)))]
    with open(tmp_path / 'train.log') as f:
        assert 'Dropped the 2 validation records of an earlier run from' in f.read()


def test_plot_alone_of_mask_rcnn_records_and_from_the_command_line(tmp_path):
    records = [{'epoch': 1, 'iteration': 10, 'train_loss': 2.5, 'segm/AP': 0.1,
                'bbox/AP': None},
               {'epoch': 2, 'iteration': 20, 'train_loss': 1.5, 'segm/AP': 0.4,
                'bbox/AP': 0.35}]
    with open(tmp_path / 'metrics.jsonl', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in records)
    path = plot.plot_training_curves(str(tmp_path), size=(6, 3), dpi=50)
    assert path == str(tmp_path / 'curves.png')
    assert png(path).shape == (150, 300, 3)
    out = str(tmp_path / 'other.png')
    assert plot.main([str(tmp_path), '-o', out]) == 0
    assert png(out).shape == (400, 1000, 3)
    assert sorted(os.listdir(tmp_path)) == ['curves.png', 'metrics.jsonl', 'other.png']
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='No training curves in'):
        plot.plot_training_curves(str(empty))
    assert plot.main([str(empty)]) == 2


def test_without_matplotlib_the_run_ends_with_a_warning(tmp_path, monkeypatch):
    for name in ('matplotlib', 'matplotlib.figure', 'matplotlib.backends.backend_agg'):
        monkeypatch.setitem(sys.modules, name, None)  # makes "import" fail
    trainer = tiny_trainer(tiny_net(), save_dir=str(tmp_path), val_interval=0)
    assert trainer.fit(max_iterations=2)['iteration'] == 2
    assert not os.path.exists(tmp_path / 'curves.png')
    with open(tmp_path / 'train.log') as f:
        assert 'No training curves drawn: plotting training curves needs matplotlib' in f.read()
