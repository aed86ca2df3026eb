"""The papers' architectures as Equinox modules.

Every model maps a **batch** ``x`` of shape ``(N, ...)`` to outputs ``(N, out)`` (GhostBatchNorm
needs the batch; the others are plain per-example maps applied to it). All array leaves are
trainable parameters; hyperparameters are static fields. Initialisation is seeded by an explicit
``key`` and follows each paper: PyTorch's default (weights and biases uniform in ±1/√fan_in,
which is also Equinox's default) for the Cohen et al. networks, the balanced λ-scaled
initialisation for the shallow-ReLU network, constant for diagonal linear networks.

:func:`by_name` builds the chapters' architectures from one registry (:data:`NAMES`), so a
chapter's ``arch`` parameter is a name, checked against that list.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh, "relu": jax.nn.relu, "elu": jax.nn.elu, "gelu": jax.nn.gelu,
    "identity": lambda x: x,
}


def _activation(name: str) -> Callable[[Array], Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(eqx.Module):
    """Fully connected network ``in → widths… → out`` with one activation between layers.

    Input ``(N, ...)`` is flattened to ``(N, in_features)``; output ``(N, out_features)``.
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: str = eqx.field(static=True)

    def __init__(self, in_features: int, widths: Sequence[int], out_features: int,
                 activation: str = "tanh", *, key: PRNGKeyArray):
        _activation(activation)
        sizes = [in_features, *widths, out_features]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(m, n, key=k) for m, n, k in zip(sizes[:-1], sizes[1:], keys))
        self.activation = activation

    def __call__(self, x: Float[Array, "N ..."]) -> Float[Array, "N out"]:
        act = _activation(self.activation)
        h = x.reshape(x.shape[0], -1)
        for layer in self.layers[:-1]:
            h = act(h @ layer.weight.T + layer.bias[None, :])
        last = self.layers[-1]
        return h @ last.weight.T + last.bias[None, :]


def fc_tanh(*, key: PRNGKeyArray, activation: str = "tanh", classes: int = 10, width: int = 200) -> MLP:
    """Cohen et al.'s ``fc-tanh``: 3072-200-200-10 (CIFAR-10, PyTorch-default init); ``width``
    changes both hidden layers (3072-width-width-classes)."""
    return MLP(3072, (width, width), classes, activation, key=key)


def fmnist_mlp(*, key: PRNGKeyArray, width: int = 128, classes: int = 4) -> MLP:
    """The flatness-bias paper's fMNIST MLP (App. K.2): five layers, ReLU, no normalisation.

    The companion paper's appendix gives 4 hidden layers of width 32 and "a total of 28480
    parameters"; with biases and 4 outputs this net has 28,420 at width 32 (28,480 is a bias-free
    784-32-32-32-32-10 net). The width is a parameter here (default 128).
    """
    return MLP(784, (width,) * 4, classes, "relu", key=key)


def max_pool_2x2(h: Float[Array, "..."], *, channel_axis: int) -> Float[Array, "..."]:
    """2 × 2 max pooling with stride 2 of one image, ``(C, H, W)`` (``channel_axis=0``) or
    ``(H, W, C)`` (``channel_axis=-1``); H and W must be even.

    Written as a reshape and a ``max`` rather than ``reduce_window`` (``eqx.nn.MaxPool2d``): the
    result is the same, but XLA differentiates ``reduce_window`` twice (an HVP) through
    ``select_and_scatter`` and, on CPU, spent minutes constant-folding its index arithmetic
    (a 500-image CNN HVP took 290 s to compile; this form compiles in seconds).
    """
    if channel_axis == 0:
        c, height, width = h.shape
        return h.reshape(c, height // 2, 2, width // 2, 2).max(axis=(2, 4))
    height, width, c = h.shape
    return h.reshape(height // 2, 2, width // 2, 2, c).max(axis=(1, 3))


class CNN(eqx.Module):
    """Cohen et al.'s ``cnn-relu`` / ``cnn-tanh``: [conv3×3(32) → act → maxpool2] × 2 → linear.

    Input ``(N, H, W, C)`` (channels last, as :mod:`eoslib.engine.data` returns); output ``(N, classes)``.
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    head: eqx.nn.Linear
    activation: str = eqx.field(static=True)

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 32), image_size: int = 32,
                 classes: int = 10, activation: str = "relu", *, key: PRNGKeyArray):
        _activation(activation)
        keys = jax.random.split(key, len(channels) + 1)
        sizes = [in_channels, *channels]
        self.convs = tuple(eqx.nn.Conv2d(a, b, 3, padding=1, key=k)
                           for a, b, k in zip(sizes[:-1], sizes[1:], keys[:-1]))
        side = image_size // 2 ** len(channels)
        self.head = eqx.nn.Linear(channels[-1] * side * side, classes, key=keys[-1])
        self.activation = activation

    def __call__(self, x: Float[Array, "N H W C"]) -> Float[Array, "N classes"]:
        act = _activation(self.activation)

        def single(img):
            h = jnp.transpose(img, (2, 0, 1))
            for conv in self.convs:
                h = max_pool_2x2(act(conv(h)), channel_axis=0)
            return self.head(h.reshape(-1))

        return jax.vmap(single)(x)


class GhostBatchNorm(eqx.Module):
    """Batch normalisation over fixed-size "ghost" batches of the batch (Hoffer et al. 2017).

    Deterministic: the batch ``(N, ..., C)`` is split into consecutive groups of ``ghost_size``
    examples (the last may be smaller), each normalised with its own per-channel statistics,
    then scaled and shifted. No running statistics: evaluation normalises the same way.
    """

    scale: Float[Array, " C"]
    shift: Float[Array, " C"]
    ghost_size: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, channels: int, ghost_size: int = 1024, eps: float = 1e-5):
        self.scale = jnp.ones(channels)
        self.shift = jnp.zeros(channels)
        self.ghost_size = ghost_size
        self.eps = eps

    def __call__(self, x: Float[Array, "N ... C"]) -> Float[Array, "N ... C"]:
        n, channels = x.shape[0], x.shape[-1]
        groups = -(-n // self.ghost_size)
        ids = jnp.arange(n) // self.ghost_size  # ghost batch of each example
        flat = x.reshape(n, -1, channels)  # (N, pixels, C)
        count = jax.ops.segment_sum(jnp.full(n, flat.shape[1], x.dtype), ids, groups)
        mean = jax.ops.segment_sum(flat.sum(1), ids, groups) / count[:, None]
        var = jax.ops.segment_sum((flat**2).sum(1), ids, groups) / count[:, None] - mean**2
        xn = (flat - mean[ids][:, None, :]) / jnp.sqrt(var[ids][:, None, :] + self.eps)
        xn = xn.reshape(x.shape)
        shape = (1,) * (x.ndim - 1) + (self.scale.shape[0],)
        return xn * self.scale.reshape(shape) + self.shift.reshape(shape)


def _conv_nhwc(conv: eqx.nn.Conv2d, h: Float[Array, "N H W C"]) -> Float[Array, "N H2 W2 C2"]:
    return jax.vmap(lambda img: jnp.transpose(conv(jnp.transpose(img, (2, 0, 1))), (1, 2, 0)))(h)


class VGG(eqx.Module):
    """VGG-style network with GhostBatchNorm (App. K of the flatness-bias paper).

    ``blocks`` gives the channels of each block, e.g. ``((8,) * 3, (16,) * 3, (32,) * 3)`` for
    the paper's VGG10 (three blocks of three 3×3 convs). Each conv (with bias) → GhostBN → ReLU;
    each block ends with 2×2 max-pooling (while the map is at least 2×2). The head is either
    global average pooling and a linear layer (``hidden=None``) or, as in the paper's VGG10,
    the flattened last map → linear ``hidden`` → GhostBN → ReLU → linear ``classes``
    (``image_size`` fixes the flattened width). Input ``(N, H, W, C)``; output ``(N, classes)``.
    """

    convs: tuple[tuple[eqx.nn.Conv2d, ...], ...]
    norms: tuple[tuple[GhostBatchNorm, ...], ...]
    dense: eqx.nn.Linear | None
    dense_norm: GhostBatchNorm | None
    head: eqx.nn.Linear

    def __init__(self, blocks: Sequence[Sequence[int]] = ((32, 32, 32), (64, 64, 64), (128, 128, 128)),
                 in_channels: int = 3, classes: int = 10, ghost_size: int = 1024,
                 hidden: int | None = None, image_size: int = 32, *, key: PRNGKeyArray):
        if hidden is not None and hidden < 1:
            raise ValueError(f"hidden={hidden} must be a positive width or None (pooled head)")
        n_keys = sum(len(b) for b in blocks) + 1 + (hidden is not None)
        keys = iter(jax.random.split(key, n_keys))
        convs, norms, c_in, side = [], [], in_channels, image_size
        for block in blocks:
            convs.append(tuple(eqx.nn.Conv2d(a, b, 3, padding=1, key=next(keys))
                               for a, b in zip((c_in, *block[:-1]), block)))
            norms.append(tuple(GhostBatchNorm(b, ghost_size) for b in block))
            c_in = block[-1]
            side = side // 2 if side >= 2 else side
        self.convs, self.norms = tuple(convs), tuple(norms)
        if hidden is None:
            self.dense, self.dense_norm = None, None
            self.head = eqx.nn.Linear(c_in, classes, key=next(keys))
        else:
            self.dense = eqx.nn.Linear(c_in * side * side, hidden, key=next(keys))
            self.dense_norm = GhostBatchNorm(hidden, ghost_size)
            self.head = eqx.nn.Linear(hidden, classes, key=next(keys))

    def __call__(self, x: Float[Array, "N H W C"]) -> Float[Array, "N classes"]:
        h = x
        for convs, norms in zip(self.convs, self.norms):
            for conv, norm in zip(convs, norms):
                h = jax.nn.relu(norm(_conv_nhwc(conv, h)))
            if h.shape[1] >= 2 and h.shape[2] >= 2:  # a 1×1 map is not pooled further
                h = jax.vmap(lambda img: max_pool_2x2(img, channel_axis=-1))(h)
        if self.dense is None:
            h = h.mean(axis=(1, 2))
        else:
            flat = h.reshape(h.shape[0], -1)
            if flat.shape[1] != self.dense.in_features:
                raise ValueError(f"input of shape {x.shape} gives {flat.shape[1]} features after the "
                                 f"convolutions; the head was built for {self.dense.in_features} "
                                 "(set image_size to the input's side)")
            h = jax.nn.relu(self.dense_norm(flat @ self.dense.weight.T + self.dense.bias[None, :]))
        return h @ self.head.weight.T + self.head.bias[None, :]


def vgg10(*, key: PRNGKeyArray, classes: int = 10, ghost_size: int = 1024) -> VGG:
    """The flatness-bias paper's small VGG10 (App. K.2 / "Can stability be detrimental" App. F):
    three blocks of three 3×3 convs of widths 8, 16, 32 with GhostBatchNorm at ``ghost_size``,
    2×2 max-pooling after each block, then the flattened 4×4×32 map → dense 32 → GhostBN →
    ReLU → ``classes`` (CIFAR-10 input, 32×32).

    The text gives the convs but not the head. This head is the one that gives the paper's
    47,892 exactly when counted as PyTorch's ``state_dict`` counts (:func:`state_count`: batch
    norms' running statistics and counters included), the convention that also gives its
    ResNet20's 271,117; 47,482 of them are trainable.
    """
    return VGG(((8,) * 3, (16,) * 3, (32,) * 3), classes=classes, ghost_size=ghost_size,
               hidden=32, image_size=32, key=key)


def vgg19(*, key: PRNGKeyArray, classes: int = 10, ghost_size: int = 1024) -> VGG:
    """The flatness-bias paper's "VGG19" as its App. K.2 describes it: six blocks of three 3×3
    convs of widths 16, 32, 64, 128, 256, 512 with GhostBatchNorm (18 convs + the head).

    The described layout has 7,875,882 trainable parameters, not the paper's 335,277 (nor does
    any VGG19-like layout we searched, counted either way), and a 32×32 image cannot be halved
    six times: here the last block does not pool (:class:`VGG` pools after each block, so only
    five halvings happen; the last block sees 1×1). This builder follows the text.
    """
    return VGG(tuple((w,) * 3 for w in (16, 32, 64, 128, 256, 512)), classes=classes,
               ghost_size=ghost_size, key=key)


def state_count(model: eqx.Module) -> int:
    """Number of entries PyTorch's ``state_dict`` of the same network would hold: the trainable
    arrays plus, per batch norm of C channels, its running mean and variance (2C) and its
    ``num_batches_tracked`` counter (1). Our :class:`GhostBatchNorm` keeps no running statistics
    (it normalises the same way at evaluation), so these are counted, not stored.

    This is how the flatness-bias paper counts (App. K.2): its ResNet20's 271,117 is
    He et al.'s 269,722 trainable parameters + 2 × 688 + 19.
    """
    trainable = sum(int(a.size) for a in jax.tree.leaves(eqx.filter(model, eqx.is_array)))
    return trainable + sum(2 * int(m.scale.shape[0]) + 1 for m in ghost_norms(model))


def ghost_norms(model: eqx.Module) -> list[GhostBatchNorm]:
    """The :class:`GhostBatchNorm` layers of ``model`` (any pytree), in tree order."""
    return [m for m in jax.tree.leaves(model, is_leaf=lambda m: isinstance(m, GhostBatchNorm))
            if isinstance(m, GhostBatchNorm)]


class ResNet(eqx.Module):
    """He et al. (2015)'s CIFAR ResNet-(6n+2) with GhostBatchNorm: a 3×3 conv (16), three
    stages of ``n`` basic blocks (widths 16, 32, 64; the first block of stages 2 and 3 has
    stride 2), global average pooling and a linear head. Convs have no bias (each is followed by
    a norm). Shortcuts are identities ("option A": subsample, zero-pad the new channels), as the
    flatness-bias paper states. Input ``(N, H, W, C)``; output ``(N, classes)``.
    """

    stem: eqx.nn.Conv2d
    stem_norm: GhostBatchNorm
    convs: tuple[tuple[eqx.nn.Conv2d, eqx.nn.Conv2d], ...]
    norms: tuple[tuple[GhostBatchNorm, GhostBatchNorm], ...]
    strides: tuple[int, ...] = eqx.field(static=True)
    head: eqx.nn.Linear

    def __init__(self, n: int = 3, widths: Sequence[int] = (16, 32, 64), in_channels: int = 3,
                 classes: int = 10, ghost_size: int = 1024, *, key: PRNGKeyArray):
        if n < 1:
            raise ValueError(f"n={n} must be >= 1 (blocks per stage; ResNet20 is n=3)")
        keys = iter(jax.random.split(key, 2 * n * len(widths) + 2))
        self.stem = eqx.nn.Conv2d(in_channels, widths[0], 3, padding=1, use_bias=False,
                                  key=next(keys))
        self.stem_norm = GhostBatchNorm(widths[0], ghost_size)
        convs, norms, strides, c = [], [], [], widths[0]
        for s, w in enumerate(widths):
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                convs.append((eqx.nn.Conv2d(c, w, 3, stride=stride, padding=1, use_bias=False,
                                            key=next(keys)),
                              eqx.nn.Conv2d(w, w, 3, padding=1, use_bias=False, key=next(keys))))
                norms.append((GhostBatchNorm(w, ghost_size), GhostBatchNorm(w, ghost_size)))
                strides.append(stride)
                c = w
        self.convs, self.norms, self.strides = tuple(convs), tuple(norms), tuple(strides)
        self.head = eqx.nn.Linear(c, classes, key=next(keys))

    def __call__(self, x: Float[Array, "N H W C"]) -> Float[Array, "N classes"]:
        h = jax.nn.relu(self.stem_norm(_conv_nhwc(self.stem, x)))
        for (c1, c2), (n1, n2), stride in zip(self.convs, self.norms, self.strides):
            out = jax.nn.relu(n1(_conv_nhwc(c1, h)))
            out = n2(_conv_nhwc(c2, out))
            short = h[:, ::stride, ::stride, :]
            pad = out.shape[-1] - short.shape[-1]
            short = jnp.pad(short, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
            h = jax.nn.relu(out + short)
        return h.mean(axis=(1, 2)) @ self.head.weight.T + self.head.bias[None, :]


def resnet20(*, key: PRNGKeyArray, classes: int = 10, ghost_size: int = 1024) -> ResNet:
    """ResNet20 (He et al. 2015, n = 3) with GhostBatchNorm: 269,722 trainable parameters, the
    flatness-bias paper's 271,117 when counted as :func:`state_count` counts (19 batch norms,
    688 channels: + 1,395)."""
    return ResNet(3, classes=classes, ghost_size=ghost_size, key=key)


class TwoLayerReLU(eqx.Module):
    """``h(x) = Σⱼ aⱼ ReLU(⟨wⱼ, x⟩)`` of the shallow-ReLU paper; no biases.

    Balanced initialisation at scale λ: ``wⱼ = λ gⱼ`` with gⱼ uniform on the unit sphere and
    ``aⱼ = λ sⱼ`` with random signs sⱼ, so ``‖wⱼ‖ = |aⱼ| = λ``. Output ``(N, 1)``.
    """

    w: Float[Array, "m d"]
    a: Float[Array, " m"]

    def __init__(self, d: int, width: int, init_scale: float = 1e-3, *, key: PRNGKeyArray):
        kg, ks = jax.random.split(key)
        g = jax.random.normal(kg, (width, d))
        self.w = init_scale * g / jnp.linalg.norm(g, axis=1, keepdims=True)
        self.a = init_scale * jax.random.rademacher(ks, (width,), dtype=self.w.dtype)

    def __call__(self, x: Float[Array, "N d"]) -> Float[Array, "N 1"]:
        return (jax.nn.relu(x.reshape(x.shape[0], -1) @ self.w.T) @ self.a)[:, None]


class DiagonalLinearNetwork(eqx.Module):
    """Depth-D diagonal linear network ``f(x) = ⟨u₁ ⊙ … ⊙ u_D, x⟩``; output ``(N, 1)``.

    ``init`` is the constant every entry of every layer starts at (a common choice in the DLN
    literature); the 2-parameter model of :mod:`eoslib.mechanisms.dln` is D = 2, d = 1.
    """

    layers: tuple[Float[Array, " d"], ...]

    def __init__(self, d: int, depth: int = 2, init: float = 0.1):
        if depth < 1:
            raise ValueError(f"depth={depth} must be ≥ 1")
        self.layers = tuple(jnp.full((d,), init) for _ in range(depth))

    def __call__(self, x: Float[Array, "N d"]) -> Float[Array, "N 1"]:
        beta = self.layers[0]
        for u in self.layers[1:]:
            beta = beta * u
        return (x.reshape(x.shape[0], -1) @ beta)[:, None]


#: The registry behind :func:`by_name`: name → (builder, the builder's arguments the name fixes,
#: the data its input layer expects).
_REGISTRY: dict[str, tuple[Callable[..., eqx.Module], dict[str, Any], str]] = {
    "fc-tanh": (fc_tanh, {"activation": "tanh"}, "cifar10"),
    "fc-relu": (fc_tanh, {"activation": "relu"}, "cifar10"),
    "fc-elu": (fc_tanh, {"activation": "elu"}, "cifar10"),
    "cnn-relu": (CNN, {"activation": "relu"}, "cifar10"),
    "cnn-tanh": (CNN, {"activation": "tanh"}, "cifar10"),
    "vgg": (VGG, {}, "cifar10"),
    "vgg10": (vgg10, {}, "cifar10"),
    "vgg19": (vgg19, {}, "cifar10"),
    "resnet20": (resnet20, {}, "cifar10"),
    "fmnist-mlp": (fmnist_mlp, {}, "fashion-mnist"),
}

#: The architectures :func:`by_name` knows: Cohen et al.'s ``fc-*`` MLPs (CIFAR-10,
#: 3072-width-width-10) and ``cnn-*`` CNNs, the flatness-bias paper's VGG and fMNIST MLP.
NAMES: tuple[str, ...] = tuple(_REGISTRY)


def names(inputs: str) -> tuple[str, ...]:
    """The architectures of :data:`NAMES` whose input is ``inputs`` (``"cifar10"``: images
    ``(N, 32, 32, 3)``; ``"fashion-mnist"``: ``(N, 28, 28, 1)``)."""
    known = sorted({entry[2] for entry in _REGISTRY.values()})
    if inputs not in known:
        raise ValueError(f"inputs={inputs!r} is not one of {known}")
    return tuple(name for name, entry in _REGISTRY.items() if entry[2] == inputs)


def options(name: str) -> tuple[str, ...]:
    """The keyword options :func:`by_name` accepts for architecture ``name`` (e.g. ``width``)."""
    builder, fixed, _ = _lookup(name)
    return tuple(p for p in inspect.signature(builder).parameters if p != "key" and p not in fixed)


def _lookup(name: str) -> tuple[Callable[..., eqx.Module], dict[str, Any], str]:
    if name not in _REGISTRY:
        raise ValueError(f"arch={name!r} is not a known architecture; known: {list(NAMES)}")
    return _REGISTRY[name]


def by_name(name: str, *, key: PRNGKeyArray, **options_: Any) -> eqx.Module:
    """The architecture called ``name`` (one of :data:`NAMES`), initialised from ``key``.

    ``options_`` are passed to its builder: ``width`` / ``classes`` for the ``fc-*`` MLPs,
    ``channels`` / ``image_size`` / ``in_channels`` / ``classes`` for the ``cnn-*`` CNNs,
    ``width`` / ``classes`` for ``fmnist-mlp``, ``blocks`` / ``ghost_size`` / ... for ``vgg``
    (:func:`options` lists them); the activation is part of the name.

    Raises:
      ValueError: an unknown name (the message lists :data:`NAMES`) or an option the
        architecture does not take (the message lists its options).
    """
    builder, fixed, _ = _lookup(name)
    allowed = options(name)
    unknown = sorted(set(options_) - set(allowed))
    if unknown:
        raise ValueError(f"architecture {name!r} takes no option {unknown}; its options are {list(allowed)}")
    return builder(key=key, **fixed, **options_)
