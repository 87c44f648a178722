# %% [markdown]
# # 8. Deploy: hybridize, export, load without the Python model code, optimize, ONNX
#
# A trained gluonseg network is a Gluon `HybridBlock`. For deployment you turn it into a
# static graph (`hybridize`), write that graph and its weights to two files (`export`), and
# load them anywhere MXNet runs with `SymbolBlock.imports`, without gluonseg's model code.
# `gluonseg.optimize` makes a faster CPU version (fused float32, bfloat16 or int8), and
# `export_onnx` writes an ONNX file for onnxruntime or TensorRT. Measured speeds and the
# limits of MXNet 1.9.1 found along the way are in [deploy.md](../deploy.md).
#
# **Weights.** With internet the defaults use `deeplab_resnet101_voc` with GluonCV's published
# weights (`pretrained=True`). The test suite runs this notebook offline with a small
# `fcn_resnet18_shapes` trained for a minute (tutorial 2) and a small picture; every step is
# the same.

# %%
import os

MODEL = os.environ.get('GLUONSEG_TUTORIAL_MODEL', 'deeplab_resnet101_voc')
WEIGHTS = os.environ.get('GLUONSEG_TUTORIAL_WEIGHTS')   # a local .params file, or None
IMAGE = os.environ.get('GLUONSEG_TUTORIAL_IMAGE', 'my_photo.jpg')
REPEAT = int(os.environ.get('GLUONSEG_TUTORIAL_REPEAT', 5))   # timing runs per path

# %% [markdown]
# ## Hybridize
#
# `hybridize()` makes the next call trace the network into a graph that MXNet then runs
# without Python; `static_alloc=True` also keeps its memory between calls. gluonseg models take
# any input size also when hybridized (the output is resized to the input inside the graph).

# %%
import warnings

import mxnet as mx
import numpy as np
import gluonseg
from gluonseg.model_zoo.registry import register_weights

# SymbolBlock.imports warns that it cannot infer the input's type before the first call
warnings.filterwarnings('ignore', message='Cannot decide type')

if WEIGHTS:
    register_weights(MODEL, path=WEIGHTS)
net = gluonseg.get_model(MODEL, pretrained=True)   # ctx=mx.gpu(0) on a GPU
net.hybridize(static_alloc=True)
x = net.preprocess(IMAGE)                            # (1, 3, H, W), normalized
reference = net(x)
print('input', x.shape, '-> logits', reference.shape)

# %% [markdown]
# ## Export and load back
#
# `export(prefix)` writes `prefix-symbol.json` (the graph) and `prefix-0000.params` (the
# weights). gluonseg exports the inference graph only: the main output, without the auxiliary
# training head.

# %%
os.makedirs('deploy', exist_ok=True)
net.export('deploy/model')
for name in sorted(os.listdir('deploy')):
    print('%-24s %8.1f MB' % (name, os.path.getsize(os.path.join('deploy', name)) / 1e6))

loaded = mx.gluon.SymbolBlock.imports('deploy/model-symbol.json', ['data'],
                                      'deploy/model-0000.params', ctx=mx.cpu())
loaded.hybridize(static_alloc=True)
print('SymbolBlock output', loaded(x).shape, 'max |difference|: %.2e'
      % float((loaded(x) - reference).abs().max().asscalar()))
other = mx.nd.random.normal(shape=(2, 3, x.shape[2] + 24, x.shape[3] - 8))
print('another batch and size:', other.shape, '->', loaded(other).shape)

# %% [markdown]
# The two files are all a server needs: `mx.gluon.SymbolBlock.imports(...)` with
# `ctx=mx.gpu(0)` runs them on a GPU, and MXNet's C++ and Java APIs read the same files.
#
# ## Faster on the CPU: `gluonseg.optimize`
#
# - `dtype='float32'`: oneDNN fuses every convolution with its BatchNorm, ReLU and residual
#   addition; same numbers to ~1e-6.
# - `dtype='int8'`: quantized convolutions with thresholds calibrated on a few batches of
#   your data (`calib_data`), the classifier kept in float32. About 3.5x faster than float32
#   for DeepLabV3-ResNet-101 on the development machine, with the same argmax as float32 on
#   every pixel of the golden test input (deploy.md).
# - `dtype='bfloat16'`: only worthwhile on CPUs with fast native bfloat16 (see deploy.md).
#
# The results take the same input and return float32 logits.

# %%
import time
from gluonseg.utils.metrics import SegmentationMetric

fused = gluonseg.optimize(net, dtype='float32')
calib = [x, x[:, :, ::-1]]                     # a few real, normalized batches
quantized = gluonseg.optimize(net, dtype='int8', calib_data=calib, calib_mode='naive')


def median_seconds(block, batch, repeat=REPEAT):
    block(batch).wait_to_read()                # first call builds the graph
    times = []
    for _ in range(repeat):
        tic = time.time()
        block(batch).wait_to_read()
        times.append(time.time() - tic)
    return float(np.median(times))


paths = {'hybridized': net, 'SymbolBlock': loaded, 'optimize float32': fused,
         'optimize int8': quantized}
latency, agreement = {}, {}
for name, block in paths.items():
    out = block(x)
    agreement[name] = float((out.argmax(axis=1) == reference.argmax(axis=1)).mean().asscalar())
    latency[name] = median_seconds(block, x)
    print('%-17s %8.2f ms   argmax agreement with the original %.1f%%'
          % (name, 1000 * latency[name], 100 * agreement[name]))

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(latency), [1000 * v for v in latency.values()], color='tab:blue')
ax.invert_yaxis()
ax.set_xlabel('median latency (ms), batch 1, %d x %d' % x.shape[2:])
plt.show()

# %% [markdown]
# On a tiny model and a tiny picture the fixed cost of each call dominates and the optimized
# graphs need not be faster at all; the gains come with a large network and picture. For
# DeepLabV3-ResNet-101 at 480 x 480 deploy.md measured 4.65 s hybridized, 4.19 s fused
# float32 and 1.32 s int8 per image on the 2-core development machine. The optimized
# networks export like any block; the file then holds oneDNN operators and needs an MXNet
# built with oneDNN (the pip CPU wheels are).

# %%
quantized.export('deploy/model-int8')
int8_loaded = mx.gluon.SymbolBlock.imports('deploy/model-int8-symbol.json', ['data'],
                                           'deploy/model-int8-0000.params')
print('int8 export reloaded, argmax agreement %.1f%%'
      % (100 * float((int8_loaded(x).argmax(axis=1) ==
                      reference.argmax(axis=1)).mean().asscalar())))

# %% [markdown]
# ## ONNX
#
# `export_onnx` writes the float32 network with a dynamic batch, height and width (input
# `data`, output `logits`), for onnxruntime on CPU or GPU and TensorRT, without MXNet. It needs
# the `onnx` extra (`pip install "gluonseg[onnx]"`); onnxruntime beside MXNet 1.9.1 installs
# with `pip install --no-deps onnxruntime==1.15.1` (deploy.md says why).

# %%
try:
    from gluonseg.model_zoo.onnx_export import export_onnx
    export_onnx(net, 'deploy/model.onnx', input_shape=tuple(x.shape))
    print('wrote deploy/model.onnx, %.1f MB' % (os.path.getsize('deploy/model.onnx') / 1e6))
except ImportError as err:
    print('ONNX export needs the onnx package:', err)

try:
    import onnxruntime as ort
except ImportError:
    print('onnxruntime is not installed; the file runs wherever it is.')
else:
    session = ort.InferenceSession('deploy/model.onnx', providers=['CPUExecutionProvider'])
    onnx_logits = session.run(['logits'], {'data': x.asnumpy()})[0]
    print('onnxruntime', onnx_logits.shape, 'max |difference| from MXNet: %.2e'
          % np.abs(onnx_logits - reference.asnumpy()).max())

# %% [markdown]
# ## On a GPU
#
# Build or load on the GPU context and feed it GPU arrays; nothing else changes:
#
# ```python
# net = gluonseg.get_model('deeplab_resnet101_voc', pretrained=True, ctx=mx.gpu(0))
# net.hybridize(static_alloc=True)
# logits = net(x.as_in_context(mx.gpu(0)))
# # or the exported files:
# block = mx.gluon.SymbolBlock.imports('deploy/model-symbol.json', ['data'],
#                                      'deploy/model-0000.params', ctx=mx.gpu(0))
# ```
#
# `gluonseg.optimize`'s bfloat16 and int8 paths are CPU-only in MXNet 1.9.1; on a GPU, run the
# float32 graph, or the ONNX file in TensorRT with `--fp16` (see deploy.md).
