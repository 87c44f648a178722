"""Colour palettes, coloured label masks and image overlays with a legend (PIL only).

Palettes are ``uint8`` arrays of shape ``(num_colors, 3)``; the colour of label ``k`` is
``palette[k]``. Label masks are 2-D integer arrays (a leading axis of size 1 is dropped, so a
``(1, H, W)`` prediction works), PIL images, or anything with ``asnumpy()`` such as an MXNet
NDArray. The label ``ignore_index`` (default 255, "void" in VOC, Cityscapes and ADE20K
annotations) is drawn in ``ignore_color``, white by default because black is VOC's background.
Overlays leave the background class and ``ignore_index`` uncoloured and put their legend in a
strip beside the picture, never over it. This module knows palettes, not datasets: the
palette and class names of a dataset are in :mod:`gluonseg.data.catalog`.

    >>> from gluonseg.utils import viz
    >>> viz.colorize_mask(prediction, 'voc').save('mask.png')
    >>> viz.overlay(image, prediction, 'voc', alpha=0.5).save('overlay.png')
"""
import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ['IGNORE_INDEX', 'DEFAULT_IGNORE_COLOR', 'voc_palette', 'ade20k_palette',
           'cityscapes_palette', 'PALETTE_NAMES', 'get_palette', 'colorize_mask', 'overlay',
           'draw_instances']

IGNORE_INDEX = 255
DEFAULT_IGNORE_COLOR = (255, 255, 255)

# Train ids 0..18 of cityscapesScripts' labels.py, in train-id order.
_CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))

# The palettes get_palette knows by name.
PALETTE_NAMES = ('voc', 'ade20k', 'cityscapes')
# Label drawn as background by a named palette when no class names say which it is: the VOC
# palette's label 0, black, is the background of the VOC annotation PNGs.
_PALETTE_BACKGROUND = {'voc': 0}


def voc_palette(num_colors=256):
    """The PASCAL VOC palette: label bits interleaved into the high bits of R, G and B.

    Parameters
    ----------
    num_colors : int
        How many colours, 1 to 256 (256 is the palette of the VOC annotation PNGs).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(num_colors, 3)``; e.g. label 1 is (128, 0, 0) and
        label 15 (person) is (192, 128, 128).
    """
    if not 1 <= num_colors <= 256:
        raise ValueError('num_colors must be between 1 and 256, got %r' % (num_colors,))
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for label in range(num_colors):
        value, red, green, blue = label, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[label] = (red, green, blue)
    return palette


def ade20k_palette():
    """A deterministic palette of 150 distinct colours for the ADE20K SceneParsing classes.

    Generated, not taken from another library: hues step by the golden ratio (neighbouring
    labels get far-apart hues) through three saturation/brightness levels.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(150, 3)``, all rows different.
    """
    golden_ratio_conjugate = 0.6180339887498949
    levels = ((0.85, 0.95), (0.60, 0.75), (0.95, 0.55))  # (saturation, value)
    palette = np.zeros((150, 3), dtype=np.uint8)
    for label in range(150):
        hue = (label * golden_ratio_conjugate) % 1.0
        saturation, value = levels[label % len(levels)]
        palette[label] = [int(round(c * 255)) for c in colorsys.hsv_to_rgb(hue, saturation, value)]
    return palette


def cityscapes_palette():
    """The colours of the 19 Cityscapes train ids (road, sidewalk, ..., bicycle).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(19, 3)``, as in cityscapesScripts' ``labels.py``.
    """
    return np.array(_CITYSCAPES_COLORS, dtype=np.uint8)


def _palette_key(name):
    key = name.lower().replace('-', '_')
    if key not in PALETTE_NAMES:
        raise ValueError('unknown palette %r; known: %s (a dataset\'s palette: '
                         'gluonseg.data.catalog.dataset_info(name).palette)'
                         % (name, ', '.join(PALETTE_NAMES)))
    return key


def get_palette(name_or_num_classes):
    """A palette by name or class count.

    Parameters
    ----------
    name_or_num_classes : str or int or array_like
        ``'voc'``: the 256-colour VOC palette; ``'ade20k'``: :func:`ade20k_palette`;
        ``'cityscapes'``: :func:`cityscapes_palette`. An int ``n`` gives the first ``n`` VOC
        colours. An ``(N, 3)`` array is checked and returned as ``uint8``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(N, 3)``.
    """
    if isinstance(name_or_num_classes, str):
        key = _palette_key(name_or_num_classes)
        return {'voc': voc_palette, 'ade20k': ade20k_palette,
                'cityscapes': cityscapes_palette}[key]()
    if isinstance(name_or_num_classes, (int, np.integer)):
        return voc_palette(int(name_or_num_classes))
    palette = np.asarray(name_or_num_classes)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) == 0:
        raise ValueError('a palette must have shape (N, 3), got %s' % (palette.shape,))
    if palette.min() < 0 or palette.max() > 255:
        raise ValueError('palette colours must be within 0..255')
    return palette.astype(np.uint8)


def _to_numpy(array):
    if hasattr(array, 'asnumpy'):  # mxnet NDArray, without importing mxnet
        return array.asnumpy()
    return np.asarray(array)


def _label_array(mask, num_colors, ignore_index):
    labels = _to_numpy(mask)
    while labels.ndim > 2 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim != 2:
        raise ValueError('a label mask must be 2-D (H, W), got shape %s' % (labels.shape,))
    if labels.dtype.kind == 'f':
        # argmax outputs are float arrays holding whole numbers
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise ValueError('a float label mask must hold whole numbers')
    elif labels.dtype.kind not in 'iub':
        raise ValueError('a label mask must be numeric, got dtype %s' % labels.dtype)
    labels = labels.astype(np.int64)
    valid = (labels >= 0) & (labels < num_colors)
    if ignore_index is not None:
        valid |= labels == ignore_index
    if not valid.all():
        bad = np.unique(labels[~valid])
        raise ValueError('label mask has values %s%s outside the palette (labels 0..%d)%s'
                         % (bad[:10].tolist(), ' ...' if len(bad) > 10 else '', num_colors - 1,
                            '' if ignore_index is None else ' other than ignore_index %d'
                            % ignore_index))
    return labels


def colorize_mask(mask, palette='voc', ignore_index=IGNORE_INDEX,
                  ignore_color=DEFAULT_IGNORE_COLOR):
    """A label mask as a palette ('P' mode) image.

    The pixel values stay the labels, so ``numpy.array(colorize_mask(mask, p))`` gives the mask
    back and the PNG can be read as an annotation.

    Parameters
    ----------
    mask : array_like or PIL.Image.Image or NDArray
        ``(H, W)`` labels (or ``(1, H, W)``); whole-number floats are accepted.
    palette : str or int or array_like
        Anything :func:`get_palette` accepts; at most 256 colours.
    ignore_index : int or None
        Label drawn in ``ignore_color`` (overriding its palette colour); None for no such label.
    ignore_color : tuple of int
        RGB colour of ``ignore_index``; white by default (black is VOC's background).

    Returns
    -------
    PIL.Image.Image
        Mode ``'P'`` image of size ``(W, H)``.

    Raises
    ------
    ValueError
        If a label is negative or has no colour and is not ``ignore_index``.
    """
    colors = get_palette(palette)
    if len(colors) > 256:
        raise ValueError("a 'P' image holds at most 256 colours, the palette has %d" % len(colors))
    if ignore_index is not None and not 0 <= ignore_index <= 255:
        raise ValueError("ignore_index must fit a 'P' image (0..255), got %d" % ignore_index)
    labels = _label_array(mask, len(colors), ignore_index)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(colors)] = colors
    if ignore_index is not None:
        table[ignore_index] = ignore_color
    # The label bytes are the palette indices (Image.fromarray's mode argument is deprecated).
    height, width = labels.shape
    image = Image.frombytes('P', (width, height), labels.astype(np.uint8).tobytes())
    image.putpalette(table.reshape(-1).tolist())
    return image


def _rgb_array(image):
    if isinstance(image, Image.Image):
        return np.asarray(image.convert('RGB'))
    pixels = _to_numpy(image)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError('an image must be (H, W), (H, W, 3) or (H, W, 4), got shape %s'
                         % (pixels.shape,))
    return np.clip(pixels[..., :3], 0, 255).astype(np.uint8)


def _load_font(size):
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()


# A legend taller than the picture gets at most this many columns; more rows extend the canvas
# downwards instead, so many classes make a tall strip rather than a very wide one.
_LEGEND_MAX_COLUMNS = 4


def _draw_legend(image, entries):
    """``image`` with a white strip on its right listing ``(name, rgb)`` entries.

    The picture is pasted unchanged at the top-left of a larger canvas; the strip holds every
    entry, in columns as tall as the picture (the canvas grows downwards when more than
    ``_LEGEND_MAX_COLUMNS`` columns would be needed), with a margin of ``pad`` pixels to every
    edge so no text is cut. The text size follows the picture (10 to 24 pixels)."""
    width, height = image.size
    font_size = int(np.clip(round(min(width, height) / 28), 10, 24))
    font = _load_font(font_size)
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    text_height = max(measure.textbbox((0, 0), 'Ag', font=font)[3], 1)
    pad = max(2, font_size // 4)
    row_height = text_height + pad
    swatch = text_height
    rows = max(1, (height - pad) // row_height,
               -(-len(entries) // _LEGEND_MAX_COLUMNS))
    columns = [entries[start:start + rows] for start in range(0, len(entries), rows)]
    column_widths = [swatch + pad + int(np.ceil(max(measure.textlength(name, font=font)
                                                    for name, _ in column)))
                     for column in columns]
    strip_width = sum(column_widths) + pad * (len(columns) + 1)
    strip_height = max(len(column) for column in columns) * row_height + pad
    canvas = Image.new('RGB', (width + strip_width, max(height, strip_height)), (255, 255, 255))
    canvas.paste(image.convert('RGB'), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = width + pad
    for column, column_width in zip(columns, column_widths):
        y = pad
        for name, color in column:
            draw.rectangle([x, y, x + swatch - 1, y + swatch - 1],
                           fill=tuple(int(c) for c in color), outline=(0, 0, 0))
            draw.text((x + swatch + pad, y), name, fill=(0, 0, 0), font=font)
            y += row_height
        x += column_width + pad
    return canvas


def _background_labels(classes, palette):
    """Labels whose class is named 'background' (also '__background__', any case); without
    names, the background label of a named palette."""
    if classes is None:
        background = _PALETTE_BACKGROUND.get(_palette_key(palette)) \
            if isinstance(palette, str) else None
        return [] if background is None else [background]
    return [label for label, name in enumerate(classes)
            if str(name).strip('_').lower() == 'background']


def overlay(image, mask, palette='voc', alpha=0.5, classes=None, legend=True,
            ignore_index=IGNORE_INDEX, draw_background=False):
    """Blend a coloured label mask over an image, with a legend of the classes present.

    Parameters
    ----------
    image : PIL.Image.Image or array_like or NDArray
        The picture, ``(H, W, 3)`` (or grey ``(H, W)``) with values 0..255.
    mask : array_like or PIL.Image.Image or NDArray
        ``(H, W)`` labels of the same height and width as ``image``.
    palette : str or int or array_like
        Anything :func:`get_palette` accepts.
    alpha : float
        Opacity of the mask colours, 0 (image only) to 1 (colours only).
    classes : sequence of str, optional
        Class names by label, for the legend and to find the background class (the one named
        ``'background'``). Without them the legend says ``'class <label>'``, and the
        background is label 0 for the ``'voc'`` palette and none for the others.
    legend : bool
        Add the legend: a white strip to the right of the picture listing the coloured labels
        with their colour, every one of them, its text sized to the picture (10 to 24 pixels).
        The picture itself is never covered; the result is wider (and taller when the legend
        needs more rows than the picture's height holds in four columns).
    ignore_index : int or None
        Label left uncoloured (the image shows through) and left out of the legend.
    draw_background : bool
        Colour the background class too. By default the label whose class is named
        ``'background'`` (label 0 of VOC, COCO and Shapes; ADE20K and Cityscapes have none)
        is left uncoloured like ``ignore_index``: its pixels keep the image's values.

    Returns
    -------
    PIL.Image.Image
        ``'RGB'`` image: the blended picture at the top-left, at the size of ``image``, and
        with ``legend`` and a coloured label the legend strip beside it.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError('alpha must be between 0 and 1, got %r' % (alpha,))
    colors = get_palette(palette)
    labels = _label_array(mask, len(colors), ignore_index)
    pixels = _rgb_array(image)
    if labels.shape != pixels.shape[:2]:
        raise ValueError('mask is %dx%d (HxW) but the image is %dx%d; resize the mask with '
                         'nearest-neighbour interpolation first'
                         % (labels.shape + pixels.shape[:2]))
    uncoloured = [] if ignore_index is None else [ignore_index]
    if not draw_background:
        uncoloured += _background_labels(classes, palette)
    colored = ~np.isin(labels, uncoloured)
    blended = pixels.astype(np.float32)
    blended[colored] = ((1.0 - alpha) * blended[colored]
                        + alpha * colors[labels[colored]].astype(np.float32))
    result = Image.fromarray(np.round(blended).astype(np.uint8))
    present = np.unique(labels[colored]).tolist()
    if not legend or not present:
        return result
    names = ['%s' % classes[label] if classes is not None and label < len(classes)
             else 'class %d' % label for label in present]
    return _draw_legend(result, [(name, colors[label]) for name, label in zip(names, present)])


def draw_instances(image, masks, boxes=None, labels=None, scores=None, alpha=0.5, legend=True,
                   palette='ade20k', box_width=2):
    """Draw instance masks, boxes and labels on an image, one colour per instance.

    Parameters
    ----------
    image : PIL.Image.Image or array_like or NDArray
        The picture, ``(H, W, 3)`` (or grey ``(H, W)``) with values 0..255.
    masks : array_like (K, H, W), or a prediction
        Binary masks at the image's size. An object with ``masks``, ``boxes``,
        ``class_names`` and ``scores`` attributes (gluonseg's ``InstancePrediction``) supplies
        all four.
    boxes : array_like (K, 4), optional
        ``x1, y1, x2, y2`` outlines to draw.
    labels : sequence of K str, optional
        Names shown at the boxes and in the legend (default ``'instance k'``).
    scores : array_like (K,), optional
        Appended to the names as ``'person 0.97'``.
    alpha : float
        Opacity of the mask colours.
    legend : bool
        List the instances with their colours in a white strip to the right of the picture,
        as :func:`overlay` does (the result is wider).
    palette : str or int or array_like
        Anything :func:`get_palette` accepts; instance k gets colour ``k`` (cycled). The
        default ADE20K palette has 150 distinct colours.
    box_width : int
        Outline width in pixels.

    Returns
    -------
    PIL.Image.Image
        ``'RGB'`` image: the drawn picture at the size of ``image``, with ``legend`` and an
        instance the legend strip beside it.
    """
    if hasattr(masks, 'masks'):
        prediction = masks
        masks = prediction.masks
        boxes = prediction.boxes if boxes is None else boxes
        labels = prediction.class_names if labels is None else labels
        scores = prediction.scores if scores is None else scores
    if not 0.0 <= alpha <= 1.0:
        raise ValueError('alpha must be between 0 and 1, got %r' % (alpha,))
    pixels = _rgb_array(image)
    masks = _to_numpy(masks).astype(bool)
    if masks.ndim != 3 or masks.shape[1:] != pixels.shape[:2]:
        raise ValueError('masks must be (K, H, W) with the image\'s %dx%d, got shape %s'
                         % (pixels.shape[:2] + (masks.shape,)))
    count = len(masks)
    colors = get_palette(palette)
    instance_colors = [colors[k % len(colors)] for k in range(count)]
    names = ['%s' % labels[k] if labels is not None else 'instance %d' % k
             for k in range(count)]
    if scores is not None:
        names = ['%s %.2f' % (name, float(score)) for name, score in zip(names, scores)]
    blended = pixels.astype(np.float32)
    for mask, color in zip(masks, instance_colors):  # later (lower-scoring) on top is fine
        blended[mask] = (1.0 - alpha) * blended[mask] + alpha * color.astype(np.float32)
    result = Image.fromarray(np.round(blended).astype(np.uint8))
    if boxes is not None:
        boxes = _to_numpy(boxes)
        draw = ImageDraw.Draw(result)
        font = _load_font(int(np.clip(round(min(result.size) / 40), 9, 18)))
        for box, color, name in zip(boxes, instance_colors, names):
            x1, y1, x2, y2 = [float(v) for v in box]
            rgb = tuple(int(c) for c in color)
            draw.rectangle([x1, y1, x2, y2], outline=rgb, width=box_width)
            left, top, right, bottom = draw.textbbox((x1, y1), name, font=font)
            offset = bottom - top + 2
            draw.rectangle([left, top - offset, right + 2, bottom - offset], fill=rgb)
            draw.text((x1 + 1, y1 - offset), name, fill=(255, 255, 255), font=font)
    if not legend or not count:
        return result
    return _draw_legend(result, list(zip(names, instance_colors)))
