"""Segment a TIFF stack with a model exported by ``marker-excite export`` -- needs only tensorflow, numpy, tifffile.

    python run_exported_model.py MODEL_DIR stack.tif labels.tif --channels DAPI,endomucin,collagen

``stack.tif``: axes ZCYX (3D) or CYX (2D), one channel per name in ``--channels`` (any order, any
subset of the model's markers; see model_card.json). Writes the label map (uint8: 0 background,
c = c-th class of the card) as ``labels.tif`` (ZYX), and with ``--probabilities`` the softmax maps.
The stack is processed slice by slice, but is read whole: for stacks larger than memory use
``marker-excite predict`` instead.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
import tifffile


def origins(size, out):
    """Output tile origins along one axis: steps of ``out``, the last pulled back inside."""
    if size <= out:
        return [0]
    return list(range(0, size - out, out)) + [size - out]


def predict_slice(serve, image, availability, card, batch_size=8):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="exported model directory (saved_model.pb + model_card.json)")
    parser.add_argument("stack", help="input TIFF, axes ZCYX or CYX")
    parser.add_argument("labels", help="output label TIFF")
    parser.add_argument("--channels", required=True, help="marker name of each channel, comma-separated")
    parser.add_argument("--probabilities", help="also write the probabilities (ZCYX float32) here")
    args = parser.parse_args()

    card = json.loads((Path(args.model) / "model_card.json").read_text())
    serve = tf.saved_model.load(args.model).signatures["serving_default"]
    panel = [m.lower() for m in card["markers"]]
    names = [c.strip().lower() for c in args.channels.split(",")]
    unknown = [n for n in names if n not in panel]
    if unknown or len(set(names)) != len(names):
        raise SystemExit(f"channels {names} must be distinct markers of the model: {card['markers']}")

    stack = tifffile.imread(args.stack).astype(np.float32)
    if stack.ndim == 3:
        stack = stack[None]  # CYX -> ZCYX
    if stack.shape[1] != len(names):
        raise SystemExit(f"{args.stack} has {stack.shape[1]} channels (axes ZCYX) but {len(names)} names were given")
    z, _, y, x = stack.shape
    # per-stack per-channel z-score (population std), mapped by name into the model's channel order
    image = np.zeros((z, len(panel), y, x), np.float32)
    availability = np.zeros(len(panel), np.float32)
    for c, name in enumerate(names):
        channel = stack[:, c].astype(np.float64)
        std = channel.std() or 1.0
        image[:, panel.index(name)] = (channel - channel.mean()) / std
        availability[panel.index(name)] = 1.0

    probs = np.stack([predict_slice(serve, image[i], availability, card) for i in range(z)])  # Z, 1+C, Y, X
    tifffile.imwrite(args.labels, probs.argmax(axis=1).astype(np.uint8))
    if args.probabilities:
        tifffile.imwrite(args.probabilities, probs, metadata={"axes": "ZCYX"})
    print(f"wrote {args.labels}: classes {['background', *card['classes']]}")


if __name__ == "__main__":
    main()
