r"""Parameter, FLOP and receptive-field accounting: the lecture's "why convolution" in numbers.

    python -m jaxconv.summary --model lenet5 [--input-shape 32,32,1]
    python -m jaxconv.summary --compare --input-shape 200,200,1 --hidden 40000 --kernel 10 \
        --filters 100

Per layer: output shape, parameters, FLOPs (multiply-adds x 2, forward, one image) and the
receptive field (size and jump = product of strides) of one output unit on the input image.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv import layers as L
from jaxconv.functional.args import effective_window, to_pair
from jaxconv.models import MODELS, count_params, create_model

# Default input shapes and constructor arguments for the CLI, per registered model.
DEFAULT_INPUTS = {
    "lenet5": ((32, 32, 1), {}),
    "stagenet": ((8, 8, 1), {"num_classes": 10}),
    "alexnet": ((227, 227, 3), {}),
}


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One line of the summary table."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    receptive_field: tuple[int, int] | None  # None: the whole input (after flattening)
    jump: tuple[int, int] | None


def _window_geometry(layer, in_hw):
    """`(window, stride)` of a spatial layer on the input grid, or None if pointwise."""
    if isinstance(layer, (L.Conv, L.LocallyConnected)):
        return effective_window(layer.kernel_size, layer.dilation), layer.stride
    if isinstance(layer, (L.MaxPool, L.AvgPool, L.LpPool)):
        window = to_pair(layer.window, "window")
        return window, window if layer.stride is None else to_pair(layer.stride, "stride")
    if isinstance(layer, L.AdaptiveAvgPool):
        stride = tuple(max(n // o, 1) for n, o in zip(in_hw, layer.output_size))
        window = tuple(n - (o - 1) * s for n, o, s in zip(in_hw, layer.output_size, stride))
        return window, stride
    if isinstance(layer, L.LocalContrastNorm):
        return (layer.kernel_size, layer.kernel_size), (1, 1)
    return None


def _flops(layer, in_shape, out_shape) -> int:
    """Forward multiply-adds x 2 for one image (pointwise ops and max pools count 0)."""
    out_pixels = math.prod(out_shape[:-1])
    if isinstance(layer, L.Conv):
        kh, kw = layer.kernel_size
        return 2 * out_pixels * out_shape[-1] * kh * kw * layer.in_features // layer.groups
    if isinstance(layer, L.LocallyConnected):
        kh, kw = layer.kernel_size
        return 2 * out_pixels * out_shape[-1] * kh * kw * layer.in_features
    if isinstance(layer, nnx.Linear):
        return 2 * layer.in_features * layer.out_features
    if isinstance(layer, L.LocalContrastNorm):  # two k x k window sums over the channel sum
        return 2 * 2 * math.prod(in_shape[:-1]) * layer.kernel_size**2
    if isinstance(layer, L.LocalResponseNorm):
        return 2 * math.prod(in_shape) * layer.size
    if isinstance(layer, (L.AvgPool, L.LpPool)):
        return math.prod(out_shape) * math.prod(to_pair(layer.window, "window"))
    return 0


def summarize(model: L.Sequential, input_shape) -> list[LayerRow]:
    """Rows for every leaf layer of `model` on one `(H, W, C)` image.

    Receptive fields follow `r_out = r_in + (k_eff - 1) * j_in`, `j_out = j_in * stride`
    (Dumoulin & Visin 2016); after `Flatten` every unit sees the whole input (None).

    Raises:
      ValueError: `input_shape` is not `(H, W, C)` or does not fit the model.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C), got {input_shape}")
    shape = jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32)
    rf, jump, rows = (1, 1), (1, 1), []
    for name, layer in model.named_leaves():
        out = nnx.eval_shape(lambda m, x: m(x), layer, shape)
        in_shape, out_shape = shape.shape[1:], out.shape[1:]
        if rf is not None:
            if len(out_shape) != 3:
                rf = jump = None
            else:
                geometry = _window_geometry(layer, in_shape[:2])
                if geometry is not None:
                    k, s = geometry
                    rf = tuple(r + (kk - 1) * j for r, kk, j in zip(rf, k, jump))
                    jump = tuple(j * ss for j, ss in zip(jump, s))
        rows.append(LayerRow(name, type(layer).__name__, tuple(out_shape),
                             count_params(layer), _flops(layer, in_shape, out_shape), rf, jump))
        shape = out
    return rows


def _fmt_pair(p):
    if p is None:
        return "all"
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def format_table(rows: list[LayerRow]) -> str:
    """The summary as an aligned text table with a total line."""
    header = ("layer", "type", "output", "params", "FLOPs", "RF", "jump")
    lines = [header] + [
        (r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.flops:,}",
         _fmt_pair(r.receptive_field), _fmt_pair(r.jump)) for r in rows
    ]
    lines.append(("total", "", "", f"{sum(r.params for r in rows):,}",
                  f"{sum(r.flops for r in rows):,}", "", ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths))) for line in lines)


def compare_connectivity(input_shape, hidden_units: int, kernel_size: int, filters: int,
                         *, bias: bool = False) -> dict[str, int]:
    """Parameters of one hidden layer wired fully, locally, or convolutionally.

    Args:
      input_shape: `(H, W, C)` of the input image.
      hidden_units: number of hidden units for the fully- and locally-connected layers.
      kernel_size: side of each unit's receptive field (LC) and of each filter (conv).
      filters: number of convolution filters (weights shared over positions).
      bias: count one bias per unit (FC, LC) / per filter (conv).

    Returns:
      `{"fully_connected": H*W*C*hidden, "locally_connected": hidden*k*k*C,
      "convolutional": filters*k*k*C}` (plus biases when `bias`). The lecture's slide:
      200x200 image, 40K hidden, 10x10 fields, 100 filters -> 1.6e9, 4e6, 1e4.
    """
    h, w, c = input_shape
    for name, v in (("hidden_units", hidden_units), ("kernel_size", kernel_size),
                    ("filters", filters), ("H", h), ("W", w), ("C", c)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if kernel_size > min(h, w):
        raise ValueError(f"kernel_size {kernel_size} is larger than the image {h}x{w}")
    fan = kernel_size * kernel_size * c
    return {
        "fully_connected": h * w * c * hidden_units + (hidden_units if bias else 0),
        "locally_connected": hidden_units * fan + (hidden_units if bias else 0),
        "convolutional": filters * fan + (filters if bias else 0),
    }


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 32,32,1), got {text!r}")
    return shape


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxconv.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet5")
    parser.add_argument("--input-shape", type=_shape, help="H,W,C (default: the model's)")
    parser.add_argument("--compare", action="store_true", help="FC vs LC vs conv parameters")
    parser.add_argument("--hidden", type=int, default=40_000, help="hidden units (--compare)")
    parser.add_argument("--kernel", type=int, default=10, help="receptive field (--compare)")
    parser.add_argument("--filters", type=int, default=100, help="conv filters (--compare)")
    args = parser.parse_args(argv)
    try:
        if args.compare:
            counts = compare_connectivity(args.input_shape or (200, 200, 1), args.hidden,
                                          args.kernel, args.filters)
            for name, n in counts.items():
                print(f"{name:>18}: {n:>15,} parameters ({n:.1e})")
            return 0
        default_shape, kwargs = DEFAULT_INPUTS.get(args.model, ((224, 224, 3), {}))
        shape = args.input_shape or default_shape
        if args.model == "lenet5":
            kwargs = dict(kwargs, input_size=shape[0], in_channels=shape[2])
        elif args.model == "stagenet":
            kwargs = dict(kwargs, input_shape=shape)
        else:
            kwargs = dict(kwargs, in_channels=shape[2])
            if args.model == "alexnet" and shape[:2] != (227, 227):
                kwargs["variant"] = "torchvision"
        model = nnx.eval_shape(lambda: create_model(args.model, rngs=nnx.Rngs(0), **kwargs))
        print(f"{args.model} on a {'x'.join(map(str, shape))} input")
        print(format_table(summarize(model, shape)))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
