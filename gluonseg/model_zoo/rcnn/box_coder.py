"""Encoding of boxes as offsets from reference boxes (anchors or proposals), and back.

For a reference box with centre (ax, ay) and size (aw, ah) and a box (gx, gy, gw, gh):

    t = ((gx - ax) / aw, (gy - ay) / ah, log(gw / aw), log(gh / ah)) - means) / stds

Decoding inverts this; ``clip`` caps the log-scale offsets before the exponential, so an
untrained or extreme prediction cannot produce an infinite box. The RPN uses stds 1, the
R-CNN box head (0.1, 0.1, 0.2, 0.2); the published models clip at 4.42 (log(1333 / 16)).
"""
from .boxes import corner_to_center

__all__ = ['BoxCoder']


class BoxCoder(object):
    """Encode/decode corner boxes relative to corner reference boxes.

    Parameters
    ----------
    stds : 4 floats
        Divide the encoded offsets by these (multiply when decoding).
    means : 4 floats
        Subtract these from the encoded offsets (add when decoding).
    clip : float or None
        Upper bound of the decoded log width/height offsets (after stds).
    """

    def __init__(self, stds=(1.0, 1.0, 1.0, 1.0), means=(0.0, 0.0, 0.0, 0.0), clip=None):
        if len(stds) != 4 or len(means) != 4:
            raise ValueError('BoxCoder needs 4 stds and 4 means, got %r and %r'
                             % (stds, means))
        self.stds = tuple(float(s) for s in stds)
        self.means = tuple(float(m) for m in means)
        self.clip = None if clip is None else float(clip)

    def __repr__(self):
        return 'BoxCoder(stds=%s, means=%s, clip=%s)' % (self.stds, self.means, self.clip)

    def encode(self, F, boxes, references):
        """Offsets (..., 4) of ``boxes`` from ``references`` (both corners; broadcast)."""
        g = F.split(corner_to_center(F, boxes), axis=-1, num_outputs=4)
        a = F.split(corner_to_center(F, references), axis=-1, num_outputs=4)
        t = [F.broadcast_div(F.broadcast_sub(g[0], a[0]), a[2]),
             F.broadcast_div(F.broadcast_sub(g[1], a[1]), a[3]),
             F.log(F.broadcast_div(g[2], a[2])),
             F.log(F.broadcast_div(g[3], a[3]))]
        return F.concat(*[(t[i] - self.means[i]) / self.stds[i] for i in range(4)], dim=-1)

    def decode(self, F, deltas, references):
        """Corner boxes (..., 4) from offsets ``deltas`` and corner ``references``
        (broadcast, e.g. (C, N, 4) offsets against (1, N, 4) proposals)."""
        a = F.split(corner_to_center(F, references), axis=-1, num_outputs=4)
        p = F.split(deltas, axis=-1, num_outputs=4)
        p = [p[i] * self.stds[i] + self.means[i] if self.means[i] else p[i] * self.stds[i]
             for i in range(4)]
        cx = F.broadcast_add(F.broadcast_mul(p[0], a[2]), a[0])
        cy = F.broadcast_add(F.broadcast_mul(p[1], a[3]), a[1])
        dw, dh = p[2], p[3]
        if self.clip is not None:
            dw = F.minimum(dw, self.clip)
            dh = F.minimum(dh, self.clip)
        half_w = F.broadcast_mul(F.exp(dw), a[2]) * 0.5
        half_h = F.broadcast_mul(F.exp(dh), a[3]) * 0.5
        return F.concat(cx - half_w, cy - half_h, cx + half_w, cy + half_h, dim=-1)
