"""2-D convolution over NHWC images (Keras layout): im2col views and one GEMM.

Forward copies the sliding windows of the padded input into a column matrix
(N*Ho*Wo, kh*kw*Cin) and multiplies it by the kernel reshaped to (kh*kw*Cin, Cout).
Backward gets gW (and gb) from one GEMM with the saved columns, and gx from one batched
GEMM (one slab per kernel offset) scattered back by slice-adds, one per kernel offset;
no Python loop ever runs over pixels or batch items. A dilated kernel (dilation_rate d) is
the same computation with the window's taps d cells apart: only the strides of the window
view and the offsets of the slice-adds change, and 'same' padding is computed for the
effective kernel size (k - 1) * d + 1, as TensorFlow does.

Also home to the helpers that pool.py and norm.py share: padding and column sums.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from dlcli.core.backend import get_array_module, reshape_view
from dlcli.core.parallel import pcopyto, pmatmul, rowwise, rowwise_sum
from dlcli.core.tensor import Function, Tensor

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]  # explicit ((top, bottom), (left, right))
PaddingSpec = str | int | tuple[Any, ...]  # as given: "valid", "same", an int or pairs


def pair(value: Any, what: str) -> Pair:
    """An int or a pair of ints (kernel size, strides, pool size, dilation) as a pair of ints >= 1.

    The one parser of this rule: the config schema, the layers and the ops all call it.

    Raises:
        ValueError: naming `what`, e.g. "kernel_size must be an int or a pair of ints, got [3]".
    """
    items = (value, value) if isinstance(value, Integral) else value
    try:
        if not isinstance(items, list | tuple):  # a str or a dict also unpacks into two
            raise TypeError
        a, b = items
        if any(isinstance(i, bool) or not isinstance(i, Integral) for i in (a, b)):
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}") from None
    if a < 1 or b < 1:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return int(a), int(b)


def _non_negative(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool) and v >= 0


def normalize_padding(padding: Any, allow_explicit: bool = True) -> PaddingSpec:
    """A padding spec in its canonical form: 'valid' or 'same' (any case given), or when
    explicit padding is allowed (Conv2D) an int, (ph, pw) or ((top, bottom), (left, right)).

    Raises:
        ValueError: saying which forms are accepted.
    """
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    if allow_explicit:
        if _non_negative(padding):
            return int(padding)
        if isinstance(padding, list | tuple) and len(padding) == 2:
            if all(_non_negative(p) for p in padding):
                return int(padding[0]), int(padding[1])
            # a pair per axis; an int for one axis and a pair for the other too (YAML lists)
            per_axis = [(p, p) if _non_negative(p) else p for p in padding]
            if all(isinstance(p, list | tuple) and len(p) == 2 and all(map(_non_negative, p))
                   for p in per_axis):
                (t, b), (l, r) = per_axis
                return (int(t), int(b)), (int(l), int(r))
        expected = "'valid', 'same', an int >= 0, (ph, pw) or ((top, bottom), (left, right))"
    else:
        expected = "'valid' or 'same'"
    raise ValueError(f"padding must be {expected}, got {padding!r}")


def _same_pad(size: int, k: int, s: int) -> Pair:
    """TF/Keras 'same': output ceil(size/s); the odd extra row goes to the bottom/right."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: Any, in_hw: tuple[int, int], kernel: Any, strides: Any) -> Padding:
    """Turn a padding spec into explicit ((top, bottom), (left, right)).

    Args:
        padding: "valid", "same" (TF rules), an int, (ph, pw) or ((top, bottom), (left, right)).
        in_hw: input height and width (needed for "same").
        kernel, strides: int or pair.

    Returns:
        ((top, bottom), (left, right)).

    Example:
        resolve_padding("same", (28, 28), 3, 1) == ((1, 1), (1, 1))
    """
    kh, kw = pair(kernel, "kernel size")
    sh, sw = pair(strides, "strides")
    spec = normalize_padding(padding)
    if spec == "valid":
        return (0, 0), (0, 0)
    if spec == "same":
        return _same_pad(int(in_hw[0]), kh, sh), _same_pad(int(in_hw[1]), kw, sw)
    if isinstance(spec, int):
        return (spec, spec), (spec, spec)
    ph, pw = spec
    if isinstance(ph, int):  # (ph, pw): the same on both sides
        return (ph, ph), (pw, pw)
    return spec


def effective_kernel(kernel: Any, dilation: Any) -> Pair:
    """The extent (k - 1) * d + 1 a kernel covers with dilation d, per axis (TF's rule)."""
    (kh, kw), (dh, dw) = pair(kernel, "kernel size"), pair(dilation, "dilation_rate")
    return (kh - 1) * dh + 1, (kw - 1) * dw + 1


def conv_output_size(size: int, k: int, s: int, padding_pair: Pair) -> int:
    """Output length along one axis: input `size`, kernel k, stride s, padding (before, after)."""
    return (size + padding_pair[0] + padding_pair[1] - k) // s + 1


# padded copies that ops only read during forward (im2col, pooling windows), kept by
# geometry: the border is written once and each call only copies the interior
_scratch: dict[tuple[Any, ...], Any] = {}
_SCRATCH_ENTRIES = 8


def pad_hw(x: Any, pads: Padding, value: float = 0.0, scratch: bool = False) -> Any:
    """x (N, H, W, C) padded on H and W; x itself when there is nothing to pad.

    With scratch=True the result is a buffer shared with later calls of the same
    geometry: valid only until the next such call, so only for use inside one forward.
    """
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    xp = get_array_module(x)
    n, h, w, c = x.shape
    shape = (n, h + t + b, w + l + r, c)
    key = (xp.__name__, shape, x.dtype.str, pads, value)
    out = _scratch.get(key) if scratch else None
    if out is None:
        out = xp.empty(shape, dtype=x.dtype)
        out[:, :t] = value
        out[:, t + h :] = value
        out[:, t : t + h, :l] = value
        out[:, t : t + h, l + w :] = value
        if scratch:
            if len(_scratch) >= _SCRATCH_ENTRIES:
                _scratch.pop(next(iter(_scratch)))  # the oldest entry
            _scratch[key] = out
    pcopyto(out[:, t : t + h, l : l + w], x)
    return out


def _windows(xpad: Any, kernel: Pair, strides: Pair, out_hw: Pair, dilation: Pair = (1, 1)
             ) -> Any:
    """A (N, Ho, Wo, kh, kw, C) view of every window of xpad (taps dilation apart); no copy."""
    xp = get_array_module(xpad)
    n, _, _, c = xpad.shape
    s0, s1, s2, s3 = xpad.strides
    shape = (n, out_hw[0], out_hw[1], kernel[0], kernel[1], c)
    strides = (s0, s1 * strides[0], s2 * strides[1], s1 * dilation[0], s2 * dilation[1], s3)
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)


# below this many input channels im2col is built channel-major (see _im2col)
_FEW_CHANNELS = 4


def _im2col(
    xpad: Any, kernel: Pair, strides: Pair, out_hw: Pair, ones: bool, may_view: bool,
    dilation: Pair = (1, 1),
) -> Any:
    """The (N*Ho*Wo, kh*kw*C [+1]) column matrix of xpad's windows, plus a column of ones.

    The ones column lets the bias ride along in the GEMM (forward) and come out of the gW
    GEMM (backward), which saves two passes over the output. With many channels the
    windows are copied row by row (the inner copy is C long); with few channels (a first
    layer on grey or RGB images) that inner copy would be 1-3 elements, so the matrix is
    built transposed instead, one contiguous shifted image per kernel offset, and
    returned as a transposed view (BLAS takes either layout). may_view allows a 1x1
    stride-1 kernel without bias to return a view of xpad instead of a copy.
    """
    xp = get_array_module(xpad)
    n, _, _, c = xpad.shape
    (kh, kw), (sh, sw), (ho, wo) = kernel, strides, out_hw
    m, k = n * ho * wo, kh * kw * c
    windows = _windows(xpad, kernel, strides, out_hw, dilation)
    if c < _FEW_CHANNELS:
        buf = xp.empty((k + ones, m), dtype=xpad.dtype)
        # batch axis first, so that threads can take a share of the images each
        # the rows are written through this view of buf (reshape_view: never a silent copy)
        rows = reshape_view(buf[:k], (kh, kw, c, n, ho, wo)).transpose(3, 0, 1, 2, 4, 5)

        def fill(rows: Any, windows: Any) -> None:
            for i in range(kh):
                for j in range(kw):
                    rows[:, i, j] = windows[:, :, :, i, j, :].transpose(0, 3, 1, 2)

        rowwise(fill, rows, windows)
        if ones:
            buf[k] = 1
        return buf.T
    if kh == kw == sh == sw == 1 and not ones and may_view:
        return windows.reshape(m, k)  # 1x1 stride 1: a free view of x
    buf = xp.empty((m, k + ones), dtype=xpad.dtype)
    pcopyto(reshape_view(buf[:, :k], windows.shape), windows)  # written through: a view
    if ones:
        buf[:, k] = 1
    return buf


def column_sum(a: Any) -> Any:
    """Sum over axis 0 of a 2-D array as GEMVs: several times faster than sum(0)."""
    return rowwise_sum(ones_gemv, a)


def ones_gemv(a: Any) -> Any:
    """Sum over axis 0 of a 2-D array as one GEMV, on the calling thread."""
    return get_array_module(a).ones(a.shape[0], dtype=a.dtype) @ a


class Conv2D(Function):
    """y = conv(x, W) + b over NHWC; W is (kh, kw, Cin, Cout), its taps `dilation` cells apart."""

    def __init__(self, strides: Pair, padding: Any, dilation: Pair = (1, 1)) -> None:
        self.strides = strides
        self.padding = padding
        self.dilation = dilation

    def forward(self, x, W, b=None):
        xp = get_array_module(x)
        if x.ndim != 4 or W.ndim != 4 or x.shape[3] != W.shape[2]:
            raise ValueError(
                f"conv2d expects x (N, H, W, C) and W (kh, kw, C, Cout) with the same C, "
                f"got x {tuple(x.shape)} and W {tuple(W.shape)}"
            )
        n, h, w, c = x.shape
        kh, kw, _, cout = W.shape
        ekh, ekw = effective_kernel((kh, kw), self.dilation)
        pads = resolve_padding(self.padding, (h, w), (ekh, ekw), self.strides)
        ho = conv_output_size(h, ekh, self.strides[0], pads[0])
        wo = conv_output_size(w, ekw, self.strides[1], pads[1])
        if ho < 1 or wo < 1:
            dilated = f" (dilated to {(ekh, ekw)})" if (ekh, ekw) != (kh, kw) else ""
            raise ValueError(
                f"conv2d: kernel {(kh, kw)}{dilated} does not fit input {(h, w)} with padding "
                f"{pads}"
            )
        has_bias = b is not None
        xpad = pad_hw(x, pads, scratch=True)
        col = _im2col(xpad, (kh, kw), self.strides, (ho, wo), ones=has_bias, may_view=xpad is x,
                      dilation=self.dilation)
        W2 = W.reshape(kh * kw * c, cout)
        if has_bias:
            W2 = xp.concatenate([W2, b.reshape(1, cout).astype(W2.dtype, copy=False)])
        y = pmatmul(col, W2)
        self.x_shape, self.w_shape, self.pads, self.out_hw = x.shape, W.shape, pads, (ho, wo)
        self.has_bias = has_bias
        self.col = col if self.needs_input_grad[1] else None
        self.W = W if self.needs_input_grad[0] else None
        return y.reshape(n, ho, wo, cout)

    def backward(self, gy):
        xp = get_array_module(gy)
        n, ho, wo, cout = gy.shape
        gy2 = gy.reshape(n * ho * wo, cout)
        gx = gW = gb = None
        if self.needs_input_grad[1]:
            # (Cout, M) @ (M, K) runs faster in OpenBLAS than (K, M) @ (M, Cout); threads
            # take a share of the M rows each and their partial products are summed
            gWb = rowwise_sum(lambda g, col: g.T @ col, gy2, self.col).T
            k = gWb.shape[0] - self.has_bias
            gW = gWb[:k].reshape(self.w_shape)
            if self.has_bias:
                gb = gWb[k]  # the ones column of col turned the bias gradient into a GEMM row
            self.col = None
        if self.has_bias and gb is None and self.needs_input_grad[2]:
            gb = column_sum(gy2)
        if self.needs_input_grad[0]:
            gx = self._grad_x(xp, gy)
        return (gx, gW, gb) if self.has_bias else (gx, gW)

    def _grad_x(self, xp, gy):
        """Columns of gx from one batched GEMM, then col2im: one slice-add per kernel offset.

        Threads take a share of the images each, GEMM and col2im together.
        """
        n, h, w, c = self.x_shape
        ho, wo = self.out_hw
        kh, kw, _, cout = self.w_shape
        sh, sw = self.strides
        dh, dw = self.dilation
        (t, b), (l, r) = self.pads
        # (kh*kw, Cout, Cin): one GEMM slab per kernel offset, each contiguous (M, Cin)
        wt = xp.ascontiguousarray(self.W.reshape(kh * kw, c, cout).transpose(0, 2, 1))
        self.W = None
        # tap (i, j) reads padded cell (i * dh + sh * oi, j * dw + sw * oj)
        taps = [(_clip_taps(i * dh, sh, ho, t, h), _clip_taps(j * dw, sw, wo, l, w))
                for i in range(kh) for j in range(kw)]  # fmt: skip

        def col2im(gx, gy):
            gcol = xp.matmul(gy.reshape(-1, cout), wt).reshape(kh * kw, len(gy), ho, wo, c)
            # add each slab straight into gx, clipped to the unpadded area: no padded buffer
            # to zero and crop, and gx comes out contiguous for the next op's backward
            gx[...] = 0
            for k, ((rows, src_rows), (cols, src_cols)) in enumerate(taps):
                if rows is not None and cols is not None:
                    gx[:, rows, cols] += gcol[k][:, src_rows, src_cols]

        gx = xp.empty((n, h, w, c), dtype=xp.result_type(gy, wt))
        rowwise(col2im, gx, gy, work=n * ho * wo * kh * kw * c)  # the size of all gcol
        return gx


def _clip_taps(offset: int, stride: int, n_out: int, before: int, size: int) -> tuple[Any, Any]:
    """Along one axis, the input cells kernel tap `offset` reaches inside the unpadded input.

    Output cell o reads padded cell offset + stride * o, i.e. input cell that minus `before`.
    Returns (input slice, output slice), or (None, None) when the tap only sees padding.
    """
    first = max(0, -(-(before - offset) // stride))  # first o whose cell is not padding
    last = min(n_out - 1, (before + size - 1 - offset) // stride)
    if last < first:
        return None, None
    start = offset + stride * first - before
    return slice(start, start + stride * (last - first) + 1, stride), slice(first, last + 1)


def conv2d(
    x: Tensor, W: Tensor, b: Tensor | None = None, strides: Any = (1, 1), padding: Any = "valid",
    dilation_rate: Any = 1,
) -> Tensor:
    """2-D convolution, NHWC, Keras kernel layout.

    Args:
        x: (N, H, W, Cin) images.
        W: (kh, kw, Cin, Cout) kernel.
        b: (Cout,) bias or None.
        strides: int or (sh, sw).
        padding: "valid", "same" (TF rules, on the dilated kernel's extent), int, (ph, pw) or
            ((top, bottom), (left, right)).
        dilation_rate: int or (dh, dw): kernel taps this many cells apart (1: an ordinary
            convolution). The op computes any strides with it; the Conv2D layer refuses
            strides > 1 with dilation_rate > 1, as Keras does.

    Returns:
        (N, Ho, Wo, Cout).

    Example:
        y = conv2d(x, W, b, strides=1, padding="same", dilation_rate=2)
    """
    hyper = {"strides": pair(strides, "strides"), "padding": padding,
             "dilation": pair(dilation_rate, "dilation_rate")}
    if b is None:
        return Conv2D.apply(x, W, **hyper)
    return Conv2D.apply(x, W, b, **hyper)
