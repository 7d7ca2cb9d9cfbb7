"""Train a chain MLP on numpy arrays and return it as a ``gradserve.Model``.

The network is built first (``from_arrays``, with the normalisation taken from the data), and the
loss is computed through that model's own ``forward_function``: the function that is optimised is
exactly the one the engine later differentiates and serves, so there is one forward implementation.

Everything is float64 and deterministic: the initial weights, the validation split and the
minibatch order all come from one numpy generator seeded with ``seed``, and the optimisation is a
sequence of jitted, fixed-shape steps, so the same data and seed give bitwise the same weights on
the same machine.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .engine import Model
from .loading import from_arrays

__all__ = ["train_mlp"]


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


def _std(a: np.ndarray) -> np.ndarray:
    # A constant column would give scale 0, which the spec rejects; leave it unscaled instead.
    s = a.std(axis=0)
    return np.where(s > 0, s, 1.0)


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: Sequence[int] = (32, 32), *,
              activation: str | Sequence[str] = "tanh", kind: str = "regression",
              input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
              code_layer: int | None = None, epochs: int = 2000, batch_size: int | None = None,
              learning_rate: float = 1e-2, final_learning_rate: float = 1e-4,
              validation_fraction: float = 0.0, patience: int | None = None, seed: int = 0,
              name: str = "model", metadata: dict | None = None) -> Model:
    """Train ``m -> hidden... -> k`` with Adam and return the model with its best weights.

    x: (n, m) raw inputs. y: (n, k) raw targets; for ``kind="classification"`` integer labels
    (n,) / (n, 1) or one-hot rows (n, k). For ``kind="compression"`` y is ignored and x is the
    target (an autoencoder); ``code_layer`` indexes ``hidden`` and must be given.

    hidden: units per hidden layer; activation: one name for all of them or one per layer. The
    output layer is softmax for classification, identity otherwise.
    batch_size: None for full batch; else shuffled minibatches of that size (a final partial batch
    is dropped, so every step has one compiled shape). The learning rate follows a cosine decay
    from ``learning_rate`` to ``final_learning_rate`` over ``epochs``.
    validation_fraction: share of rows held out (random, seeded) to pick the best epoch; with
    ``patience``, training stops after that many epochs without a validation improvement.
    Without a split the last epoch's weights are returned.

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

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = int(round(validation_fraction * n))
    val, fit = order[:n_val], order[n_val:]
    if not 0 <= validation_fraction < 1 or len(fit) < 2:
        raise ValueError(f"validation_fraction {validation_fraction} leaves {len(fit)} rows to fit")

    # Normalisation from the fitting rows only, so the validation rows stay unseen data.
    in_shift, in_scale = x[fit].mean(axis=0), _std(x[fit])
    if kind == "classification":
        out_shift, out_scale = np.zeros(k), np.ones(k)  # outputs are probabilities
    else:
        out_shift, out_scale = y[fit].mean(axis=0), _std(y[fit])

    # Glorot-normal kernels and zero biases: with normalised inputs, tanh units start unsaturated.
    sizes = [m, *hidden, k]
    kernels = [rng.normal(0.0, np.sqrt(2.0 / (a + b)), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(b) for b in sizes[1:]]
    out_act = "softmax" if kind == "classification" else "identity"
    batch = len(fit) if batch_size is None else min(batch_size, len(fit))
    details = {"seed": seed, "optimizer": "adam", "learning_rate": learning_rate,
               "final_learning_rate": final_learning_rate, "batch_size": batch,
               "n_train": int(len(fit)), "n_validation": int(n_val)}
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
    schedule = optax.cosine_decay_schedule(learning_rate, epochs * steps_per_epoch,
                                           alpha=final_learning_rate / learning_rate)
    optimizer = optax.adam(schedule)
    x_fit, y_fit, x_val, y_val = (jnp.asarray(a) for a in (x[fit], y[fit], x[val], y[val]))

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

    w = jnp.asarray(model.get_weights().reshape(-1))
    state = optimizer.init(w)
    best = (np.inf, w, 0, np.nan)  # (validation loss, weights, epoch, training loss)
    ran = 0
    for e in range(1, epochs + 1):
        perm = rng.permutation(len(fit)) if batch_size is not None else np.arange(len(fit))
        batches = perm[:steps_per_epoch * batch].reshape(steps_per_epoch, batch)
        w, state, train_loss, val_loss = epoch(w, state, batches)
        ran = e
        val_loss = float(val_loss)
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
