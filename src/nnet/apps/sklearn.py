"""scikit-learn estimators: :class:`NnetClassifier` and :class:`NnetRegressor`.

They follow scikit-learn's conventions (``fit``, ``predict``, ``predict_proba``, ``score``,
``partial_fit``, ``warm_start``, ``get_params``/``set_params``, the fitted attributes ending
in ``_``), so an nnet network can sit in a ``Pipeline``, a ``GridSearchCV`` or
``cross_val_score`` like ``MLPClassifier``/``MLPRegressor``. Training is nnet's own: the
parameters become a :class:`~nnet.training.settings.Settings` and
:func:`nnet.experiment.build` turns it into the network, the update and the
:class:`~nnet.training.loop.Trainer` that ``nnet train`` uses too.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from nnet.apps.sklearn import NnetClassifier

    model = make_pipeline(StandardScaler(), NnetClassifier((64,), max_iter=50)).fit(X, y)

The estimators do not scale the features (put a ``StandardScaler`` in front, as with
``MLPClassifier``). scikit-learn is an optional extra (``pip install nnet[sklearn]``): this
module imports it, and nothing else in nnet imports this module.

Differences from scikit-learn's MLP, all deliberate:

- the classifier has one softmax output per class, two for a binary problem; its loss is
  the softmax cross-entropy (the same as scikit-learn's log-loss);
- the regressor's loss is nnet's mean squared error, sum_q (O_q - t_q)^2 / #L per sample
  (scikit-learn's is half the squared error), so ``loss_curve_`` is on that scale;
- there is no ``tol``: ``max_iter`` epochs are run unless ``early_stopping`` stops them
  (``n_iter_no_change`` epochs without a lower validation loss, then the best epoch's weights
  are put back);
- ``warm_start`` and ``partial_fit`` continue the optimizer's state (Adam's moments and step
  count) and the shuffling generator where the previous call left them, so a fit split into
  calls trains like one long run.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d

from nnet.core.network import Network
from nnet.errors import NnetError
from nnet.experiment import build, model_meta
from nnet.training.loop import Split
from nnet.training.settings import CUSTOM, Settings

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - scikit-learn 1.4 and 1.5

    def validate_data(estimator: Any, *args: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(*args, **kwargs)


__all__ = ["NnetClassifier", "NnetRegressor"]

# The estimator's parameter behind each setting, for error messages.
_PARAMETER_OF = {
    "sizes": "hidden_layer_sizes",
    "activation": "activation",
    "engine": "engine",
    "optimizer": "optimizer",
    "lr": "learning_rate_init",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "weight_decay": "weight_decay",
    "batch_size": "batch_size",
    "epochs": "max_iter",
    "dropout": "dropout",
    "schedule": "schedule",
    "patience": "n_iter_no_change",
    "seed": "random_state",
    "dtype": "dtype",
}


class _NnetEstimator(BaseEstimator):
    """What the classifier and the regressor share: the parameters, and training."""

    _task: str  # the Settings' task
    _loss: str  # the Settings' loss

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        engine: str = "backprop",
        optimizer: str = "adam",
        learning_rate_init: float = 0.001,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        batch_size: int | str = "auto",
        max_iter: int = 200,
        dropout: float | tuple[float, ...] | None = None,
        schedule: str = "constant",
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        random_state: Any = None,
        warm_start: bool = False,
        dtype: str = "float64",
        verbose: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.engine = engine
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.dropout = dropout
        self.schedule = schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.warm_start = warm_start
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ settings
    def _hidden(self) -> tuple[int, ...]:
        h = self.hidden_layer_sizes
        sizes = (h,) if isinstance(h, numbers.Integral) else h
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes must be an int or a sequence of ints; got {h!r}."
            ) from None
        if not all(isinstance(s, numbers.Integral) and s >= 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must hold positive ints; got {h!r}.")
        return tuple(int(s) for s in sizes)

    def _seed(self) -> int:
        """``random_state`` as a seed for Settings.seed: an int as it is, a RandomState or
        None (NumPy's global one) drawn from, so that each fit differs, as in scikit-learn."""
        rs = self.random_state
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            if rs < 0:
                raise ValueError(f"random_state must be >= 0; got {rs}.")
            return int(rs)
        return int(check_random_state(rs).randint(np.iinfo(np.int32).max))

    def _settings(
        self, n_features: int, n_outputs: int, n_train: int, *, epochs: int, val: int, patience: int
    ) -> Settings:
        sizes = (n_features, *self._hidden(), n_outputs)
        bs = self.batch_size
        if isinstance(bs, str):
            if bs != "auto":
                raise ValueError(f"batch_size must be 'auto' or a positive int; got {bs!r}.")
            bs = min(200, n_train)
        elif isinstance(bs, numbers.Integral) and not isinstance(bs, bool):
            bs = int(bs)
        dropout = self.dropout
        if isinstance(dropout, numbers.Real) and not isinstance(dropout, bool):
            dropout = (float(dropout),)
        elif dropout is not None:
            dropout = tuple(dropout)
        sgd = self.optimizer == "sgd"
        momentum = self.momentum if sgd else 0.0
        try:
            return Settings(
                task=self._task,
                dataset=CUSTOM,
                sizes=sizes,
                activation=(self.activation,) * (len(sizes) - 2) + ("identity",),
                loss=self._loss,
                init=None,
                engine=self.engine,
                optimizer=self.optimizer,
                lr=self.learning_rate_init,
                momentum=momentum,
                nesterov=bool(sgd and self.nesterov and momentum),
                weight_decay=self.weight_decay,
                dropout=dropout,
                schedule=self.schedule,
                batch_size=bs,
                epochs=epochs,
                val=val,
                patience=patience,
                seed=self._seed(),
                dtype=self.dtype,
            )
        except NnetError as exc:
            message = str(exc)
            for field, parameter in _PARAMETER_OF.items():
                message = message.replace(f"setting {field}:", f"parameter {parameter}:")
            raise ValueError(message) from None

    def _split_sizes(self, n: int, incremental: bool) -> tuple[int, int]:
        """(validation samples, patience): early stopping holds out ``validation_fraction``
        of the samples (rounded up, as scikit-learn does); never in ``partial_fit``."""
        if not self.early_stopping or incremental:
            return 0, 0
        f = self.validation_fraction
        if not (isinstance(f, numbers.Real) and 0 < f < 1):
            raise ValueError(f"validation_fraction must be in (0, 1); got {f!r}.")
        val = math.ceil(f * n)
        if val >= n:
            raise ValueError(
                f"early stopping holds out {val} of the {n} samples for validation, leaving "
                "none to train on; give more samples or a smaller validation_fraction."
            )
        return val, self.n_iter_no_change

    # ------------------------------------------------------------------ training
    def _continues(self, incremental: bool) -> bool:
        return (incremental or self.warm_start) and hasattr(self, "net_")

    def _train(self, X: np.ndarray, y: np.ndarray, n_outputs: int, *, incremental: bool) -> None:
        """Train on features X and labels (classifier) or targets (regressor) y: a new
        network, or the fitted one continued (``warm_start``, ``partial_fit``)."""
        go_on = self._continues(incremental)
        val, patience = self._split_sizes(len(X), incremental)
        epochs = 1 if incremental else self.max_iter
        settings = self._settings(
            X.shape[1], n_outputs, len(X) - val, epochs=epochs, val=val, patience=patience
        )
        arrays = {"x": X, "y": y, "n_classes": n_outputs if self._task == "classifier" else None}
        try:
            exp = build(settings, arrays=arrays)
        except NnetError as exc:
            raise ValueError(str(exc)) from None
        trainer = exp.trainer
        # no labels in the training split: the loop then skips its running training
        # accuracy (an argmax per batch) that nothing here reads
        train = Split(exp.train.x, exp.train.t, None)
        if go_on:
            old: Network = self.net_
            if old.sizes != exp.net.sizes or old.activations != exp.net.activations:
                raise ValueError(
                    f"{'partial_fit' if incremental else 'warm_start'} continues the fitted "
                    f"network {old.sizes} ({old.activations[0]}); the parameters now ask for "
                    f"{exp.net.sizes} ({exp.net.activations[0]}): refit from scratch."
                )
            exp.net.weights = [w.astype(exp.net.dtype, copy=True) for w in old.weights]
            optimizer = self._optimizer
            if (
                optimizer.settings() == trainer.update.optimizer.settings()
                and old.dtype == exp.net.dtype
            ):
                trainer.update.optimizer = optimizer  # moments and step count go on
            trainer.rng.bit_generator.state = self._rng_state

        def report(row: dict[str, Any]) -> None:
            if self.verbose:
                extra = f", validation loss = {row['val_loss']:.8f}" if "val_loss" in row else ""
                print(f"Iteration {n_iter + row['epoch']}, loss = {row['train_loss']:.8f}{extra}")

        n_iter = self.n_iter_ if go_on else 0
        history = trainer.fit(train, exp.evals, on_epoch=report if self.verbose else None)
        if not go_on:
            self.loss_curve_ = []
            self.validation_loss_curve_ = [] if val else None
            self.n_iter_ = 0
        self.loss_curve_ += [row["train_loss"] for row in history]
        if val:
            curve = self.validation_loss_curve_ or []
            self.validation_loss_curve_ = curve + [row["val_loss"] for row in history]
        self.n_iter_ += len(history)
        # what a model file records, so that nnet.save(model.net_, path) writes a complete one
        classes = getattr(self, "classes_", None)
        if classes is not None:
            classes = [c if isinstance(c, str | int | float) else str(c) for c in classes.tolist()]
        exp.net.meta = model_meta(exp, trainer.train_seconds, classes=classes)
        self.net_ = exp.net
        self.n_outputs_ = n_outputs
        self._optimizer = trainer.update.optimizer
        self._rng_state = trainer.rng.bit_generator.state

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs O for X (logits for the classifier)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.net_.forward(X)

    def _check_X_y(self, X: Any, y: Any, *, reset: bool, multi_output: bool) -> tuple:
        return validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=(np.float64, np.float32),
            multi_output=multi_output,
            y_numeric=multi_output,
        )


class NnetClassifier(ClassifierMixin, _NnetEstimator):
    """An nnet network as a scikit-learn classifier: softmax outputs, cross-entropy loss.

    Parameters
    ----------
    hidden_layer_sizes
        The widths of the hidden layers, e.g. ``(100,)`` or ``(64, 32)``; ``()`` for none.
    activation
        The hidden layers' activation: relu, leaky_relu, elu, tanh, sigmoid or identity
        (the weights start from the customary initialization of each).
    engine
        The gradient engine: backprop (fastest), frontprop, matrix or recursive; they give
        the same gradient.
    optimizer
        adam, adamw or sgd.
    learning_rate_init
        The learning rate (of the ``schedule``).
    momentum, nesterov
        SGD's momentum and whether it is Nesterov's; ignored by adam and adamw.
    weight_decay
        L2 penalty on the weights, not the biases (scikit-learn's ``alpha``).
    batch_size
        Samples per mini-batch; "auto" is min(200, n_samples).
    max_iter
        Epochs (passes over the data) of ``fit``; ``partial_fit`` runs one.
    dropout
        None, one rate for every hidden layer, or one rate per layer 0 .. L-1 (input first).
    schedule
        The learning-rate schedule over ``max_iter`` epochs: constant, step or cosine.
    early_stopping, validation_fraction, n_iter_no_change
        Hold out ``validation_fraction`` of the samples, stop after ``n_iter_no_change``
        epochs without a lower validation loss, and keep the best epoch's weights.
    random_state
        An int (reproducible bit for bit), a ``numpy.random.RandomState``, or None: the
        seed of the initial weights, the validation split, the shuffling and dropout.
    warm_start
        ``fit`` continues the fitted network (and its optimizer) instead of starting anew.
    dtype
        float64 (default) or float32 (about twice as fast on large networks).
    verbose
        Print the loss of every epoch.

    Attributes
    ----------
    classes_ : the class labels (sorted), of any type ``y`` had
    net_ : the trained :class:`nnet.Network` (``nnet.save(model.net_, path)`` writes it)
    loss_curve_ : the mean training loss of every epoch
    validation_loss_curve_ : the validation loss of every epoch (early stopping), else None
    n_iter_ : epochs run, over every call when continued
    n_features_in_, feature_names_in_, n_outputs_ : as in scikit-learn
    """

    _task = "classifier"
    _loss = "cross_entropy"

    def fit(self, X: Any, y: Any) -> NnetClassifier:
        """Train on features X (n_samples, n_features) and labels y (n_samples,)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NnetClassifier:
        """One epoch over X, y, continuing the network; the first call needs ``classes``,
        every label that any call will show."""
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X: Any, y: Any, *, incremental: bool, classes: Any = None) -> NnetClassifier:
        go_on = self._continues(incremental)
        X, y = self._check_X_y(X, y, reset=not go_on, multi_output=False)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not go_on:
            if incremental and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = unique_labels(y if classes is None else classes)
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(
                f"classes={classes!r} differs from the classes of the first call, "
                f"{self.classes_!r}."
            )
        self._train(X, self._encode(y), len(self.classes_), incremental=incremental)
        return self

    def _encode(self, y: np.ndarray) -> np.ndarray:
        """The labels as indices into ``classes_``; ValueError for a label not there."""
        classes = self.classes_
        try:
            idx = np.searchsorted(classes, y)
            ok = idx < len(classes)
            ok[ok] = classes[idx[ok]] == y[ok]
        except TypeError:
            ok = np.zeros(len(y), dtype=bool)
        if not ok.all():
            unknown = unique_labels(y[~ok]) if ok.any() else np.unique(y.astype(str))
            raise ValueError(f"y holds labels not in classes_ {classes!r}: {unknown[:5]!r}.")
        return idx.astype(np.int64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The probability of every class (columns in the order of ``classes_``)."""
        O = self._outputs(X)
        return self.net_.loss.probabilities(O)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The log of :meth:`predict_proba`, computed without underflow."""
        O = self._outputs(X)
        return self.net_.loss.log_softmax(O)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of every sample."""
        O = self._outputs(X)
        return self.classes_[np.argmax(O, axis=1)]


class NnetRegressor(RegressorMixin, _NnetEstimator):
    """An nnet network as a scikit-learn regressor: identity outputs, nnet's mean squared
    error (one output per target column). The parameters and attributes are those of
    :class:`NnetClassifier`, without ``classes_``; the targets are not scaled (use
    ``TransformedTargetRegressor`` for targets far from unit size)."""

    _task = "regressor"
    _loss = "mse"

    def fit(self, X: Any, y: Any) -> NnetRegressor:
        """Train on features X (n_samples, n_features) and targets y (n_samples,) or
        (n_samples, n_targets)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> NnetRegressor:
        """One epoch over X, y, continuing the network."""
        return self._fit(X, y, incremental=True)

    def _fit(self, X: Any, y: Any, *, incremental: bool) -> NnetRegressor:
        go_on = self._continues(incremental)
        X, y = self._check_X_y(X, y, reset=not go_on, multi_output=True)
        t = y.reshape(len(y), -1)
        self._train(X, t, t.shape[1], incremental=incremental)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The predicted targets: shape (n_samples,) for one target, else (n_samples,
        n_targets)."""
        O = self._outputs(X)
        return O.ravel() if O.shape[1] == 1 else O

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}
