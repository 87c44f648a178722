"""Multiply-add counting from the graph."""
from mxnet.gluon import nn

import gluonseg
from gluonseg.utils.flops import count_macs


def test_single_layers_by_hand():
    conv = nn.HybridSequential()
    conv.add(nn.Conv2D(8, 3, padding=1, in_channels=4, groups=2))
    conv.initialize()
    # 8 output channels x 10 x 12 positions x (4/2 inputs x 3 x 3)
    assert count_macs(conv, (1, 4, 10, 12)) == 8 * 10 * 12 * 2 * 9
    deconv = nn.Conv2DTranspose(6, 2, strides=2, in_channels=3)
    deconv.initialize()
    # each of 3 x 5 x 5 inputs feeds 6 x 2 x 2 outputs
    assert count_macs(deconv, (2, 3, 5, 5)) == 2 * 3 * 5 * 5 * 6 * 4
    dense = nn.Dense(7, in_units=5)
    dense.initialize()
    assert count_macs(dense, (3, 5)) == 3 * 7 * 5


def test_resnet50_matches_its_well_known_cost():
    net = gluonseg.get_model('resnet50_v1b', pretrained_base=False)
    assert abs(count_macs(net, (1, 3, 224, 224)) / 1e9 - 4.09) < 0.02


def test_segmentation_model_counts_the_inference_graph():
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False)
    small, large = count_macs(net, (1, 3, 64, 64)), count_macs(net, (1, 3, 128, 128))
    assert large == 4 * small  # all convolutions scale with the pixel count at stride 8
