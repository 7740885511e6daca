"""Segment a TIFF stack with a model exported by ``marker-excite export`` -- needs only tensorflow, numpy, tifffile.

    python run_exported_model.py MODEL_DIR stack.ome.tif labels.ome.tif [--channels DAPI,-,collagen]
        [--pixel-size 0.45] [--probabilities probs.ome.tif] [--batch-size 4] [--allow-unseen]

Does what ``marker-excite predict`` does, so both give the same probabilities:

* channel names come from ``--channels`` (one per channel, file order; ``-`` skips a channel) or the
  file's OME-XML; they are matched to the model's markers by name (case-insensitive). A name given
  with ``--channels`` must be a marker of the model (a typo is an error naming the closest marker); a
  channel of the file's own names that is not a model marker is skipped with a notice; a model marker
  the stack lacks is a zero channel with availability 0;
* a marker outside the card's ``training.markers_seen`` (no training sample had it: what it does to
  the output is unknown, the card's ``unseen_markers``) is refused unless ``--allow-unseen``; name its
  channel ``-`` to leave it out;
* each used channel is z-scored with its own mean and (population) std over the whole stack;
* when the stack's pixel size (``--pixel-size``, else the OME-XML or ImageJ calibration) and the
  model's (``spacing_zyx_um`` of model_card.json) are both known and differ, each slice is resampled
  in-plane to the model's pixel size (linear, Gaussian anti-aliasing when shrinking) and the
  probabilities are resampled back;
* slices are zero-padded by the tile margin and tiled; overlapping output tiles are averaged.

Outputs are OME-TIFF (axes ZCYX, channel names, physical sizes in the OME-XML and X/YResolution in
pixels per µm, the stack's calibration): the label map (uint8, channel ``labels``: 0 background, c =
c-th class of the card) and with ``--probabilities`` the softmax maps (float32, channels ``outputs``
of the card). The stack is read whole: for stacks larger than memory use ``marker-excite predict``.
Axes: any order of Z, C (or S, samples), Y and X, as ``predict`` reads them.
"""

import argparse
import difflib
import json
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

#: TensorFlow's start-up lines (absl's banner, its INFO / WARNING lines), which TF_CPP_MIN_LOG_LEVEL does not silence
TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \d\d:\d\d:\d+\.\d+ )")


def import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 pointed at a temporary file, then write back every
    captured line except its start-up noise (as ``marker_excite/tf_quiet.py`` does for the package)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines()
                    if line.strip() and not TF_NOISE.match(line)]  # fmt: skip
            if kept:
                print("\n".join(kept), file=sys.stderr)
    return tensorflow


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's runtime C++ log: errors only
tf = import_tensorflow_quietly()

UM_PER_UNIT = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3}


# -- reading -----------------------------------------------------------------------------------------
def read_stack(path):
    """The stack as ZCYX float32, its OME channel names (or None) and its (z, y, x) µm (entries None if unknown)."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper().replace("I", "Z").replace("Q", "Z")
        data, axes = series.asarray(), axes.replace("S", "C") if "C" not in axes else axes
        names, spacing = None, [None, None, None]
        if tif.is_ome:
            pixels = next(e for e in ET.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels"))
            names = [c.get("Name") for c in pixels if c.tag.endswith("Channel")] or None
            for i, a in enumerate("ZYX"):
                if pixels.get(f"PhysicalSize{a}") is not None:
                    unit = UM_PER_UNIT.get(pixels.get(f"PhysicalSize{a}Unit", "µm"), 1.0)
                    spacing[i] = float(pixels.get(f"PhysicalSize{a}")) * unit
        elif tif.is_imagej:
            unit = UM_PER_UNIT.get(str(tif.imagej_metadata.get("unit", "")).replace("\\u00B5", "µ"))
            tags = tif.pages.first.tags
            if unit is not None and "XResolution" in tags:
                (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
                spacing = [tif.imagej_metadata.get("spacing"), yd / yn * unit, xd / xn * unit]
                spacing[0] = spacing[0] * unit if spacing[0] is not None else None
    if len(set(axes)) != len(axes) or not set(axes) <= set("ZCYX") or not {"Y", "X"} <= set(axes):
        raise SystemExit(f"{path}: cannot interpret axes {series.axes}; save it as ZCYX, CZYX, CYX, YXS or ZYX")
    for a in "ZC":
        if a not in axes:
            data, axes = data[None], a + axes
    stack = np.transpose(data, [axes.index(a) for a in "ZCYX"])
    return stack.astype(np.float32), names, spacing


# -- resampling (the same arithmetic as scipy.ndimage.gaussian_filter / zoom used by `predict`) ---------
def gaussian_axis(image, sigma, axis):
    """Gaussian filter along one axis (edges: nearest, kernel radius 4 sigma)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    weights /= weights.sum()
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(image.astype(np.float64), pad, mode="edge")
    n = image.shape[axis]
    out = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(weights))
    return out.astype(np.float32)


def linear_axis(image, size, axis):
    """Linear interpolation of one axis to ``size`` samples, pixel edges aligned."""
    n = image.shape[axis]
    x = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * image.ndim
    shape[axis] = size
    f = (x - lo).reshape(shape)
    return (np.take(image, lo, axis=axis) * (1 - f) + np.take(image, hi, axis=axis) * f).astype(np.float32)


def resize(image, shape_yx):
    """``[..., Y, X]`` float32 resized to ``shape_yx`` (anti-aliased when shrinking)."""
    out = image.astype(np.float32)
    for axis, size in zip((-2, -1), shape_yx):
        n = out.shape[axis]
        if size < n:
            out = gaussian_axis(out, (n / size - 1.0) / 2.0, out.ndim + axis)
    for axis, size in zip((-2, -1), shape_yx):
        if size != out.shape[axis]:
            out = linear_axis(out, size, out.ndim + axis)
    return out


# -- prediction --------------------------------------------------------------------------------------
def origins(size, out):
    """Output tile origins along one axis: steps of ``out``, the last pulled back inside."""
    if size <= out:
        return [0]
    return list(range(0, size - out, out)) + [size - out]


def predict_slice(serve, image, availability, card, batch_size):
    """image [K, Y, X] standardised -> probabilities [1+C, Y, X]."""
    tile_in, tile_out, margin = (card["tile"][k] for k in ("input_size", "output_size", "margin"))
    k, y, x = image.shape
    cy, cx = max(y, tile_out), max(x, tile_out)
    padded = np.zeros((cy + 2 * margin, cx + 2 * margin, k), np.float32)  # zero padding AFTER z-scoring
    padded[margin : margin + y, margin : margin + x] = image.transpose(1, 2, 0)
    tiles = [(a, b) for a in origins(y, tile_out) for b in origins(x, tile_out)]
    total = np.zeros((len(card["outputs"]), cy, cx), np.float64)
    count = np.zeros((cy, cx))
    for i in range(0, len(tiles), batch_size):
        chunk = tiles[i : i + batch_size]
        batch = np.stack([padded[a : a + tile_in, b : b + tile_in] for a, b in chunk])
        avail = np.tile(availability, (len(chunk), 1))
        probs = serve(image=tf.constant(batch), availability=tf.constant(avail))["probabilities"].numpy()
        for (a, b), p in zip(chunk, probs):
            total[:, a : a + tile_out, b : b + tile_out] += p.transpose(2, 0, 1)
            count[a : a + tile_out, b : b + tile_out] += 1
    return (total / count)[:, :y, :x].astype(np.float32)


def write_ome(path, data, names, spacing):
    """ZCYX ``data`` as a calibrated OME-TIFF, via a temporary file renamed into place."""
    sz, sy, sx = spacing
    meta = {"axes": "ZCYX", "Channel": {"Name": list(names)}, "PhysicalSizeX": sx, "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": sy, "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": sz, "PhysicalSizeZUnit": "µm"}  # fmt: skip
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tifffile.imwrite(tmp, data, ome=True, metadata=meta, resolution=(1 / sx, 1 / sy), resolutionunit="NONE")
    os.replace(tmp, path)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="exported model directory (saved_model.pb + model_card.json)")
    parser.add_argument("stack", help="input (OME-)TIFF, axes ZCYX, CZYX, CYX or ZYX")
    parser.add_argument("labels", help="output label OME-TIFF")
    parser.add_argument(
        "--channels",
        help="marker name of each channel, comma-separated; '-' skips a channel (default: from the OME-XML)",
    )
    parser.add_argument("--pixel-size", help="stack pixel size in µm: 'XY' or 'Y,X' (default: from the file)")
    parser.add_argument("--probabilities", help="also write the probabilities (ZCYX float32 OME-TIFF) here")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    parser.add_argument(
        "--allow-unseen", action="store_true", help="feed markers that no training sample of the model had"
    )
    return parser.parse_args()


def channel_names(args, n_channels, file_names):
    """The marker name of each channel of the stack ('-': skipped), from --channels or the file."""
    names = [c.strip() for c in args.channels.split(",")] if args.channels else file_names
    if not names:
        raise SystemExit(f"{args.stack} names no channels; give --channels")
    if len(names) != n_channels:
        raise SystemExit(f"{args.stack} has {n_channels} channels but {len(names)} names: {names}")
    named = [n for n in names if n != "-"]
    if not named:
        raise SystemExit("every channel is skipped ('-'): name at least one")
    if len({n.lower() for n in named}) != len(named):
        raise SystemExit(f"channel names {names} must be distinct")
    return names


def channel_plan(args, names, card):
    """[(stack channel, model channel)] of the channels that are markers of the model; a name the user gave
    that is not a marker is an error, a name from the file a notice; markers never seen in training are
    refused unless --allow-unseen (the card's ``unseen_markers`` rule)."""
    panel = [m.lower() for m in card["markers"]]
    for c, n in enumerate(names):
        if n == "-" or n.lower() in panel:
            continue
        if args.channels:  # a name the user gave: a typo or another name for a marker must not be skipped silently
            close = difflib.get_close_matches(n.lower(), panel, n=1, cutoff=0.6)
            hint = f" (did you mean {card['markers'][panel.index(close[0])]!r}?)" if close else ""
            raise SystemExit(
                f"channel name {n!r}{hint} is not a marker of the model ({', '.join(card['markers'])}); "
                "name the channel '-' to skip it"
            )
        print(
            f"notice: channel {c} {n!r} is not a marker of the model ({', '.join(card['markers'])}); skipped",
            file=sys.stderr,
        )
    used = [(c, panel.index(n.lower())) for c, n in enumerate(names) if n.lower() in panel]
    if not used:
        raise SystemExit(f"no channel of {args.stack} is a marker of the model: {card['markers']}")
    seen = card.get("training", {}).get("markers_seen")
    unseen = [card["markers"][k] for _, k in used if seen is not None and panel[k] not in {m.lower() for m in seen}]
    if unseen and not args.allow_unseen:
        raise SystemExit(
            f"the model never saw {', '.join(unseen)} in training (its training samples had {', '.join(seen)}); "
            "name its channel '-' to leave it out, or give --allow-unseen to feed it anyway"
        )
    return used


def model_input(stack, used, n_markers):
    """Per-stack per-channel z-score (population std), mapped into the model's channel order:
    image [Z, K, Y, X] and availability [K]."""
    z, _, y, x = stack.shape
    image = np.zeros((z, n_markers, y, x), np.float32)
    availability = np.zeros(n_markers, np.float32)
    for c, k in used:
        channel = stack[:, c].astype(np.float64)
        image[:, k] = (channel - channel.mean()) / (channel.std() or 1.0)
        availability[k] = 1.0
    return image, availability


def main():
    args = parse_args()
    card = json.loads((Path(args.model) / "model_card.json").read_text())
    serve = tf.saved_model.load(args.model).signatures["serving_default"]
    stack, file_names, spacing = read_stack(args.stack)
    names = channel_names(args, stack.shape[1], file_names)
    if args.pixel_size:
        sizes = [float(s) for s in args.pixel_size.split(",")]
        spacing[1:] = sizes * 2 if len(sizes) == 1 else sizes
    used = channel_plan(args, names, card)
    image, availability = model_input(stack, used, len(card["markers"]))

    z, _, y, x = stack.shape
    model_yx = card.get("spacing_zyx_um") and [float(s) for s in card["spacing_zyx_um"][1:]]
    work_yx = (y, x)
    if model_yx and None in spacing[1:]:
        print(
            f"notice: pixel size of {args.stack} unknown (give --pixel-size); not resampled to the model's {model_yx} µm",
            file=sys.stderr,
        )
    elif model_yx and not np.allclose(spacing[1:], model_yx, rtol=1e-6):
        work_yx = tuple(max(1, int(round(n * s / t))) for n, s, t in zip((y, x), spacing[1:], model_yx))
    probs = np.empty((z, len(card["outputs"]), y, x), np.float32)
    for i in range(z):
        out = predict_slice(serve, resize(image[i], work_yx), availability, card, args.batch_size)
        probs[i] = resize(out, (y, x))

    calibration = [s if s is not None else 1.0 for s in spacing]
    write_ome(args.labels, probs.argmax(axis=1).astype(np.uint8)[:, None], ["labels"], calibration)
    if args.probabilities:
        write_ome(args.probabilities, probs, card["outputs"], calibration)
    print(f"wrote {args.labels}: 0=background, " + ", ".join(f"{i + 1}={c}" for i, c in enumerate(card["classes"])))


if __name__ == "__main__":
    main()
