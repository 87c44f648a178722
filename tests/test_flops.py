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


class _Attention(nn.HybridBlock):
    """x (N, C, H, W) -> x^T x over the positions, then that times x: two batch_dots."""

    def hybrid_forward(self, F, x):
        flat = x.reshape((0, 0, -1))                                 # (N, C, P)
        energy = F.batch_dot(flat, flat, transpose_a=True)           # (N, P, P), sum over C
        return F.batch_dot(flat, energy)                              # (N, C, P), sum over P


def test_matrix_products_are_counted():
    # (N, P, P) outputs summing over C, then (N, C, P) outputs summing over P = 6 x 7
    assert count_macs(_Attention(), (2, 3, 6, 7)) == 2 * 42 * 42 * 3 + 2 * 3 * 42 * 42


def test_resnet50_matches_its_well_known_cost():
    net = gluonseg.get_model('resnet50_v1b', pretrained_base=False)
    assert abs(count_macs(net, (1, 3, 224, 224)) / 1e9 - 4.09) < 0.02


def test_segmentation_model_counts_the_inference_graph():
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False)
    small, large = count_macs(net, (1, 3, 64, 64)), count_macs(net, (1, 3, 128, 128))
    assert large == 4 * small  # all convolutions scale with the pixel count at stride 8


class _TwiceCalled(nn.HybridBlock):
    """One conv applied to the input and to its 2x-pooled copy, as C4's stage 4 runs on the
    proposals and on the detections in one graph."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(4, 3, padding=1, in_channels=2)

    def hybrid_forward(self, F, x):
        small = F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type='avg')
        return self.conv(x).sum() + self.conv(small).sum()


def test_a_block_called_twice_counts_both_calls_at_their_own_shapes():
    net = _TwiceCalled()
    net.initialize()
    per_position = 4 * 2 * 9
    assert count_macs(net, (1, 2, 8, 8)) == per_position * (8 * 8 + 4 * 4)


def test_mask_rcnn_c4_counts_stage_4_on_the_proposals_and_on_the_detections():
    net = gluonseg.get_model('mask_rcnn_resnet50_v1b_coco', pretrained_base=False,
                             rpn_test_post_nms=300, max_dets=20)
    # Stage 4 (res5) costs 809 M multiply-adds per 14x14 RoI: 300 proposals + 20 detections.
    stage4 = count_macs(net.top_features, (1, 1024, 14, 14))
    assert abs(stage4 / 1e6 - 808.7) < 1
    total = count_macs(net, (1, 3, 256, 256))
    assert total > 320 * stage4
