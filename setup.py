"""gluonseg: semantic and instance segmentation model zoo for Apache MXNet Gluon."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, 'gluonseg', '__init__.py')) as f:
        return re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)


# libmxnet.so of mxnet-cu112 links against these CUDA 11 runtimes; gluonseg preloads them
# from the nvidia-*-cu11 wheels (gluonseg/_cuda.py), so no system CUDA toolkit is needed.
CUDA11_WHEELS = [
    'nvidia-cuda-runtime-cu11',
    'nvidia-cublas-cu11',
    'nvidia-cudnn-cu11>=8.9,<9',
    'nvidia-cufft-cu11',
    'nvidia-curand-cu11',
    'nvidia-cusolver-cu11',
    'nvidia-nccl-cu11',
    'nvidia-cuda-nvrtc-cu11',
    'nvidia-nvtx-cu11',
]

setup(
    name='gluonseg',
    version=read_version(),
    description='Semantic and instance segmentation model zoo for Apache MXNet Gluon '
                '(FCN, PSPNet, DeepLabV3, Mask R-CNN) compatible with GluonCV weights',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluonseg', 'gluonseg.*']),
    python_requires='>=3.8,<3.12',
    # MXNet 1.9.1 uses np.bool, removed in numpy 1.24.
    install_requires=[
        'numpy>=1.17,<1.24',
        'Pillow',
        'tqdm',
        'requests',
        'scipy',
    ],
    extras_require={
        'cpu': ['mxnet==1.9.1'],
        'cu112': ['mxnet-cu112==1.9.1'] + CUDA11_WHEELS,
        'coco': ['pycocotools>=2.0.6'],
        # The lean Mask R-CNN's RoIAlign and NMS on the CPU (gluonseg.model_zoo.rcnn.fast_*)
        # and the optimized segmentation models' final resize (model_zoo.optimize.fast_resize);
        # without it MXNet's slower operators give the same values.
        'fast': ['numba>=0.57'],
        # ONNX export (gluonseg.model_zoo.onnx_export): MXNet 1.9.1's exporter needs
        # onnx.mapping, gone from later onnx; 1.14.1 installs beside numpy<1.24.
        # onnxruntime cannot be listed: its Python 3.11 wheels declare numpy>=1.24.2 (pip
        # refuses the combination). It runs beside numpy 1.23.5 when installed with
        # `pip install --no-deps onnxruntime==1.15.1` (tests/test_onnx_export.py needs it).
        'onnx': ['onnx==1.14.1'],
        # Tutorials (docs/tutorials, executed by tests/test_notebooks.py) and the API
        # reference (pdoc, tests/test_api_docs.py). matplotlib < 3.10 and its contourpy
        # resolve beside numpy < 1.24 (verified: matplotlib 3.9.4, contourpy 1.3.0).
        'docs': ['pdoc>=14', 'nbformat>=5.7', 'nbclient>=0.7', 'ipykernel>=6',
                 'matplotlib>=3.7,<3.10'],
        'test': ['pytest>=7', 'pycocotools>=2.0.6', 'onnx==1.14.1', 'pdoc>=14', 'numba>=0.57',
                 'nbformat>=5.7', 'nbclient>=0.7', 'ipykernel>=6', 'matplotlib>=3.7,<3.10'],
    },
    entry_points={'console_scripts': ['gluonseg=gluonseg.cli:main']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
)
