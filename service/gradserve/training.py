"""Train a chain MLP on numpy arrays and return it as a ``gradserve.Model``.

The network is built first (``from_arrays``, with the normalisation taken from the data), and the
loss is computed through that model's own ``forward_function``: the function that is optimised is
exactly the one the engine later differentiates and serves, so there is one forward implementation.

Everything is float64 and deterministic: the initial weights, the validation split and the
minibatch order all come from one numpy generator seeded with ``seed``, and the optimisation is a
sequence of jitted, fixed-shape steps, so the same data and seed give bitwise the same weights on
the same machine.

Two optimisers: Adam on minibatches (the default), and full-batch L-BFGS, which for the small
networks and smooth targets of tabular data reaches errors an order of magnitude lower in the same
time (``gradserve.build`` uses it).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .engine import Model
from .loading import from_arrays
from .normalisation import SCALES, SHIFTS, Choice, resolve_choices, shift_scale

__all__ = ["train_mlp", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "lbfgs")
# Called after every epoch with (epoch, training loss, validation loss); see train_mlp.
Progress = Callable[[int, float, float], None]


def _one_hot(y: np.ndarray, n_classes: int | None) -> np.ndarray:
    """Integer labels (n,) or (n, 1), or one-hot rows (n, k) -> one-hot float64 (n, k)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.astype(np.float64)
    labels = y.reshape(-1)
    if not np.all(labels == np.round(labels)) or labels.min() < 0:
        raise ValueError("classification labels must be non-negative integers or one-hot rows")
    labels = labels.astype(np.int64)
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    return np.eye(k)[labels]


def _normalisation(data: np.ndarray, names: Sequence[str] | None, shift: Choice, scale: Choice,
                   what: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "x" if what == "input" else "y"  # the default names from_arrays gives
    names = list(names) if names is not None else [f"{prefix}{j}" for j in range(data.shape[1])]
    shifts = resolve_choices(shift, names, SHIFTS, f"{what} shift")
    scales = resolve_choices(scale, names, SCALES, f"{what} scale")
    # Lenient: a constant column would give scale 0, which the spec rejects; it is left unscaled.
    return shift_scale(data, names, shifts, scales, strict=False)


def _split(n: int, rng: np.random.Generator, fraction: float,
           indices: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, fitting rows). The permutation is drawn either way, so the generator
    is in the same state for the initial weights whichever way the split is given."""
    order = rng.permutation(n)
    if indices is None:
        n_val = int(round(fraction * n))
        val, fit = order[:n_val], order[n_val:]
        if not 0 <= fraction < 1 or len(fit) < 2:
            raise ValueError(f"validation_fraction {fraction} leaves {len(fit)} rows to fit")
        return val, fit
    val = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
    if val.size and (val[0] < 0 or val[-1] >= n):
        bad = val[0] if val[0] < 0 else val[-1]
        raise ValueError(f"validation index {bad} is outside the {n} rows (0 to {n - 1})")
    fit = np.setdiff1d(np.arange(n), val)
    if len(fit) < 2:
        raise ValueError(f"{len(val)} validation rows leave {len(fit)} of {n} rows to fit")
    return val, fit


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: Sequence[int] = (32, 32), *,
              activation: str | Sequence[str] = "tanh", kind: str = "regression",
              input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
              code_layer: int | None = None, epochs: int = 2000, batch_size: int | None = None,
              learning_rate: float = 1e-2, final_learning_rate: float = 1e-4,
              validation_fraction: float = 0.0, validation_indices: Sequence[int] | None = None,
              patience: int | None = None, seed: int = 0, name: str = "model",
              metadata: dict | None = None, optimizer: str = "adam",
              input_shift: Choice = "mean", input_scale: Choice = "std",
              output_shift: Choice = "mean", output_scale: Choice = "std",
              progress: Progress | None = None) -> Model:
    """Train ``m -> hidden... -> k`` with Adam and return the model with its best weights.

    x: (n, m) raw inputs. y: (n, k) raw targets; for ``kind="classification"`` integer labels
    (n,) / (n, 1) or one-hot rows (n, k). For ``kind="compression"`` y is ignored and x is the
    target (an autoencoder); ``code_layer`` indexes ``hidden`` and must be given.

    hidden: units per hidden layer; activation: one name for all of them or one per layer. The
    output layer is softmax for classification, identity otherwise.
    batch_size: None for full batch; else shuffled minibatches of that size (a final partial batch
    is dropped, so every step has one compiled shape). The learning rate follows a cosine decay
    from ``learning_rate`` to ``final_learning_rate`` over ``epochs``.
    validation_fraction: share of rows held out (random, seeded) to pick the best epoch;
    validation_indices: the held-out rows given instead. With ``patience``, training stops after
    that many epochs without a validation improvement. Without a split the last epoch's weights
    are returned.

    optimizer: ``"adam"`` (minibatches, the learning-rate schedule above) or ``"lbfgs"``
    (full batch, step lengths from a line search: learning rates and batch_size are ignored, and
    an epoch is one L-BFGS iteration).

    input_shift / input_scale / output_shift / output_scale: normalisation choices (see
    ``gradserve.normalisation``): one for all features, one per feature, or a mapping from
    feature name to choice (``"*"`` for the rest). Computed on the fitting rows only.
    Classification outputs are probabilities and are never normalised; compression outputs use
    the input choices.

    progress: called after every epoch with (epoch, training loss, validation loss).

    Returns a Model whose spec records ranges (min/max of x and y), names and, in ``metadata``,
    the training details (epochs run, best epoch, seed, losses, validation error).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, m) with n >= 2; got {x.shape}")
    n, m = x.shape
    if kind == "classification":
        y = _one_hot(y, None if output_names is None else len(output_names))
    elif kind == "compression":
        if code_layer is None:
            raise ValueError("a compression model needs code_layer, an index into hidden")
        # Outputs are the inputs by name, so unnamed inputs need the names from_arrays would give.
        input_names = list(input_names) if input_names is not None else [f"x{j}" for j in range(m)]
        y, output_names = x, input_names
    else:
        y = np.asarray(y, dtype=np.float64)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"y must have {n} rows, like x; got shape {y.shape}")
    k = y.shape[1]
    activations = [activation] * len(hidden) if isinstance(activation, str) else list(activation)
    if len(activations) != len(hidden):
        raise ValueError(f"{len(hidden)} hidden layers but {len(activations)} activations")

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r} is not one of {OPTIMIZERS}")

    rng = np.random.default_rng(seed)
    val, fit = _split(n, rng, validation_fraction, validation_indices)
    n_val = len(val)

    # Normalisation from the fitting rows only, so the validation rows stay unseen data.
    in_shift, in_scale = _normalisation(x[fit], input_names, input_shift, input_scale, "input")
    if kind == "classification":
        out_shift, out_scale = np.zeros(k), np.ones(k)  # outputs are probabilities
    elif kind == "compression":
        out_shift, out_scale = in_shift, in_scale
    else:
        out_shift, out_scale = _normalisation(y[fit], output_names, output_shift, output_scale,
                                              "output")

    # Glorot-normal kernels and zero biases: with normalised inputs, tanh units start unsaturated.
    sizes = [m, *hidden, k]
    kernels = [rng.normal(0.0, np.sqrt(2.0 / (a + b)), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(b) for b in sizes[1:]]
    out_act = "softmax" if kind == "classification" else "identity"
    batch = len(fit) if batch_size is None or optimizer == "lbfgs" else min(batch_size, len(fit))
    details = {"seed": seed, "optimizer": optimizer}
    if optimizer == "adam":
        details.update(learning_rate=learning_rate, final_learning_rate=final_learning_rate)
    details.update(batch_size=batch, n_train=int(len(fit)), n_validation=int(n_val))
    model = from_arrays(
        kernels, biases, [*activations, out_act], kind=kind, input_names=input_names,
        output_names=output_names, input_shift=in_shift, input_scale=in_scale,
        output_shift=out_shift, output_scale=out_scale,
        input_range=(x.min(axis=0), x.max(axis=0)),
        output_range=(y.min(axis=0), y.max(axis=0)), code_layer=code_layer, name=name,
    )
    forward = model.forward_function

    def loss(w, xb, yb):
        pred = forward(w, xb)
        if kind == "classification":
            # Cross-entropy on the served softmax; the floor keeps log finite for a saturated class.
            return -jnp.mean(jnp.sum(yb * jnp.log(jnp.maximum(pred, 1e-300)), axis=-1))
        # Mean squared error in normalised units, so every output counts alike whatever its scale.
        return jnp.mean(((pred - yb) / out_scale) ** 2)

    steps_per_epoch = len(fit) // batch
    x_fit, y_fit, x_val, y_val = (jnp.asarray(a) for a in (x[fit], y[fit], x[val], y[val]))
    if optimizer == "lbfgs":
        opt, epoch = _lbfgs_epoch(loss, x_fit, y_fit, x_val, y_val, n_val)
    else:
        schedule = optax.cosine_decay_schedule(learning_rate, epochs * steps_per_epoch,
                                               alpha=final_learning_rate / learning_rate)
        opt, epoch = _adam_epoch(loss, optax.adam(schedule), x_fit, y_fit, x_val, y_val, n_val)

    w = jnp.asarray(model.get_weights().reshape(-1))
    state = opt.init(w)
    best = (np.inf, w, 0, np.nan)  # (validation loss, weights, epoch, training loss)
    ran = 0
    for e in range(1, epochs + 1):
        if optimizer == "adam":
            perm = rng.permutation(len(fit)) if batch_size is not None else np.arange(len(fit))
            batches = perm[:steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        else:
            batches = None
        w, state, train_loss, val_loss = epoch(w, state, batches)
        ran = e
        val_loss = float(val_loss)
        if progress is not None:
            progress(e, float(train_loss), val_loss)
        if not np.isfinite(val_loss):
            break  # diverged: keep the best weights seen so far
        if val_loss < best[0] or not n_val:
            best = (val_loss, w, e, float(train_loss))
        elif patience is not None and e - best[2] >= patience:
            break

    details.update(epochs_run=ran, best_epoch=best[2], train_loss=best[3],
                   loss="cross_entropy" if kind == "classification" else "normalised_mse")
    if n_val:
        details["validation_loss"] = best[0]
        pred = np.asarray(forward(best[1], x_val))
        if kind == "classification":
            details["validation_accuracy"] = float(np.mean(pred.argmax(1) == y[val].argmax(1)))
        else:
            details["validation_rmse"] = float(np.sqrt(np.mean((pred - y[val]) ** 2)))
    spec = model.spec.model_copy(update={"metadata": {**(metadata or {}), "training": details}})
    return Model(spec, np.asarray(best[1]), name=name, buckets=model.buckets)


def _adam_epoch(loss, optimizer, x_fit, y_fit, x_val, y_val, n_val):
    @jax.jit
    def epoch(w, state, batches):
        # One compiled call per epoch: a scan over the (steps, batch) index array.
        def step(carry, idx):
            w, state = carry
            value, grad = jax.value_and_grad(loss)(w, x_fit[idx], y_fit[idx])
            updates, state = optimizer.update(grad, state, w)
            return (optax.apply_updates(w, updates), state), value
        (w, state), values = jax.lax.scan(step, (w, state), batches)
        val_loss = loss(w, x_val, y_val) if n_val else jnp.mean(values)
        return w, state, jnp.mean(values), val_loss

    return optimizer, epoch


def _lbfgs_epoch(loss, x_fit, y_fit, x_val, y_val, n_val):
    """One full-batch L-BFGS iteration per compiled call; the loss reported is the one at the
    start of the iteration (the line search has it already)."""
    optimizer = optax.lbfgs()

    def full(w):
        return loss(w, x_fit, y_fit)

    value_and_grad = optax.value_and_grad_from_state(full)

    @jax.jit
    def epoch(w, state, _):
        value, grad = value_and_grad(w, state=state)
        updates, state = optimizer.update(grad, state, w, value=value, grad=grad, value_fn=full)
        w = optax.apply_updates(w, updates)
        val_loss = loss(w, x_val, y_val) if n_val else value
        return w, state, value, val_loss

    return optimizer, epoch
