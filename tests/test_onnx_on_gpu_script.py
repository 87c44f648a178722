"""scripts/benchmark/onnx_on_gpu.py's pack step: the graph travels without its weights and the
refilled graph computes GluonCV's golden logits (its run step needs PyTorch and a GPU)."""
import os

import pytest

from test_docs import load_script

pytestmark = pytest.mark.benchmark   # deselected by default; -m benchmark runs it
onnx = pytest.importorskip('onnx', reason='the ONNX export needs onnx (pip install onnx==1.14.1)')
ort = pytest.importorskip('onnxruntime', reason='the check runs the graph in onnxruntime')


def test_packed_graph_is_small_and_refills_to_gluoncvs_logits(tmp_path):
    script = load_script('scripts/benchmark/onnx_on_gpu.py')
    name = 'deeplab_resnet101_voc'
    script.main(['pack', str(tmp_path), '--models', name])
    # 567 weight tensors, about 235 MB with values, travel as their names and shapes.
    assert os.path.getsize(tmp_path / (name + '.onnx')) < 1e6
    model = script.refilled(str(tmp_path), name)
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    data = script.golden(name)
    (out,) = session.run(None, {'data': data['input']})
    assert out.shape == data['out'].shape
    assert script.relative_error(out, data['out']) < 1e-5
    # Unfilled, the packed graph does not load: no weight travelled as zeros.
    with pytest.raises(Exception, match='(?i)initializer|tensor|size|data'):
        ort.InferenceSession(str(tmp_path / (name + '.onnx')), providers=['CPUExecutionProvider'])
