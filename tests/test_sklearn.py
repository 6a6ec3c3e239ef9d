"""The scikit-learn estimators: scikit-learn's own estimator checks, and their use in
pipelines, searches and incremental training."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import nnet  # noqa: E402
from nnet.apps.sklearn import NnetClassifier, NnetRegressor  # noqa: E402

# Small and quick, yet enough epochs to pass the checks that ask for a good training score.
CHECKED = [
    NnetClassifier((16,), learning_rate_init=0.01, max_iter=50, random_state=0),
    NnetRegressor((16,), learning_rate_init=0.01, max_iter=50, random_state=0),
]


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def iris():
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def regression():
    x, y = make_regression(n_samples=150, n_features=5, noise=5.0, random_state=0)
    return StandardScaler().fit_transform(x), y / np.std(y)


def test_pipeline_with_scaler_learns_iris():
    x, y = load_iris(return_X_y=True)
    net = NnetClassifier((16,), learning_rate_init=0.01, max_iter=100, random_state=0)
    model = make_pipeline(StandardScaler(), net)
    model.fit(x, y)
    assert model.score(x, y) > 0.9
    proba = model.predict_proba(x)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])


def test_grid_search_and_cross_val_score():
    x, y = iris()
    search = GridSearchCV(
        NnetClassifier(max_iter=30, random_state=0),
        {"hidden_layer_sizes": [(4,), (16,)], "learning_rate_init": [0.001, 0.03]},
        cv=3,
    )
    search.fit(x, y)
    assert search.best_params_["hidden_layer_sizes"] in [(4,), (16,)]
    assert search.best_score_ > 0.8
    assert search.best_estimator_.n_iter_ == 30
    regressor = NnetRegressor((16,), learning_rate_init=0.01, max_iter=100, random_state=0)
    scores = cross_val_score(regressor, *regression())
    assert len(scores) == 5 and scores.mean() > 0.8


def test_string_labels_round_trip():
    x, y = iris()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = NnetClassifier((16,), learning_rate_init=0.01, max_iter=100, random_state=0)
    model.fit(x, names)
    np.testing.assert_array_equal(model.classes_, ["setosa", "versicolor", "virginica"])
    predicted = model.predict(x)
    assert predicted.dtype == names.dtype and set(predicted) <= set(names)
    assert np.mean(predicted == names) > 0.9
    assert model.score(x, names) == np.mean(predicted == names)
    # a model file written from the fitted network records the task and the class names
    assert model.net_.meta["task"] == "classifier"
    assert model.net_.meta["classes"] == ["setosa", "versicolor", "virginica"]


def test_saved_network_gives_the_same_outputs(tmp_path):
    x, y = iris()
    model = NnetClassifier((8,), max_iter=5, random_state=0).fit(x, y)
    nnet.save(model.net_, tmp_path / "iris.npz")
    loaded = nnet.load(tmp_path / "iris.npz")
    np.testing.assert_array_equal(loaded.forward(x), model.net_.forward(x))
    assert loaded.meta["classes"] == [0, 1, 2]


def test_partial_fit_improves_and_equals_fit():
    x, y = iris()
    model = NnetClassifier((16,), learning_rate_init=0.01, batch_size=32, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(x, y)
    model.partial_fit(x, y, classes=[0, 1, 2])
    first = model.score(x, y)
    for _ in range(19):
        model.partial_fit(x[:100], y[:100])  # a call need not show every class
        model.partial_fit(x[100:], y[100:])
    assert model.n_iter_ == 39 and len(model.loss_curve_) == 39
    assert model.score(x, y) > max(first, 0.9)
    with pytest.raises(ValueError, match="not in classes_"):
        model.partial_fit(x[:2], [0, 7])
    # partial_fit continues the optimizer and the shuffling: k calls are one k-epoch fit
    calls = NnetClassifier((16,), batch_size=32, random_state=3)
    for _ in range(4):
        calls.partial_fit(x, y, classes=[0, 1, 2])
    once = NnetClassifier((16,), batch_size=32, max_iter=4, random_state=3).fit(x, y)
    for a, b in zip(calls.net_.weights, once.net_.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert calls.loss_curve_ == once.loss_curve_


def test_regressor_partial_fit():
    x, y = regression()
    model = NnetRegressor((16,), learning_rate_init=0.01, random_state=0)
    model.partial_fit(x, y)
    first = model.score(x, y)
    for _ in range(30):
        model.partial_fit(x, y)
    assert model.n_iter_ == 31 and model.score(x, y) > max(first, 0.8)


def test_warm_start_continues():
    x, y = iris()
    model = NnetClassifier((16,), max_iter=10, warm_start=True, random_state=0).fit(x, y)
    loss = model.loss_curve_[-1]
    model.fit(x, y)
    assert model.n_iter_ == 20 and len(model.loss_curve_) == 20
    assert model.loss_curve_[-1] < loss
    # two warm-started fits of 10 epochs are one fit of 20, bit for bit
    once = NnetClassifier((16,), max_iter=20, random_state=0).fit(x, y)
    for a, b in zip(model.net_.weights, once.net_.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    # without warm_start, fit starts anew
    model.set_params(warm_start=False, max_iter=10)
    assert model.fit(x, y).n_iter_ == 10
    # a warm start cannot change the architecture
    model.set_params(warm_start=True, hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(x, y)


def test_random_state_reproducible_bit_for_bit():
    x, y = iris()

    def weights(**kw):
        params = {"hidden_layer_sizes": (8,), "max_iter": 5, "dropout": 0.1, **kw}
        return NnetClassifier(**params).fit(x, y).net_.weights

    for a, b in zip(weights(random_state=7), weights(random_state=7), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights(random_state=7)[0], weights(random_state=8)[0])
    # a RandomState is drawn from, as scikit-learn does: reproducible from its seed
    a = weights(random_state=np.random.RandomState(1))
    b = weights(random_state=np.random.RandomState(1))
    np.testing.assert_array_equal(a[0], b[0])
    rs = np.random.RandomState(1)
    assert not np.array_equal(weights(random_state=rs)[0], weights(random_state=rs)[0])


@pytest.mark.parametrize("engine", ["frontprop", "matrix", "recursive"])
def test_every_engine_gives_the_same_fit(engine):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 3)), rng.integers(0, 3, 24)
    params = {"hidden_layer_sizes": (4,), "max_iter": 3, "batch_size": 8, "random_state": 0}
    ours = NnetClassifier(engine=engine, **params).fit(x, y)
    ref = NnetClassifier(engine="backprop", **params).fit(x, y)
    for a, b in zip(ours.net_.weights, ref.net_.weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-6)
    t = rng.normal(size=(24, 2))
    ours = NnetRegressor(engine=engine, activation="tanh", **params).fit(x, t)
    ref = NnetRegressor(engine="backprop", activation="tanh", **params).fit(x, t)
    np.testing.assert_allclose(ours.predict(x), ref.predict(x), atol=1e-6)


def test_early_stopping_keeps_the_best_epoch():
    x, y = iris()
    model = NnetClassifier(
        (16,),
        learning_rate_init=0.05,
        max_iter=500,
        early_stopping=True,
        n_iter_no_change=5,
        random_state=0,
    ).fit(x, y)
    assert model.n_iter_ < 500
    curve = model.validation_loss_curve_
    assert len(curve) == model.n_iter_ == len(model.loss_curve_)
    assert min(curve) < curve[-1] or model.n_iter_ == 500
    assert NnetClassifier(max_iter=2).fit(x, y).validation_loss_curve_ is None


def test_regressor_outputs_and_float32():
    x, y = regression()
    one = NnetRegressor((8,), max_iter=5, random_state=0).fit(x, y)
    assert one.predict(x).shape == (150,) and one.n_outputs_ == 1
    two = NnetRegressor((8,), max_iter=5, random_state=0).fit(x, np.c_[y, -y])
    assert two.predict(x).shape == (150, 2) and two.n_outputs_ == 2
    single = NnetRegressor((8,), max_iter=20, random_state=0, dtype="float32").fit(x, y)
    double = NnetRegressor((8,), max_iter=20, random_state=0).fit(x, y)
    assert single.net_.dtype == np.float32 and single.predict(x).dtype == np.float32
    np.testing.assert_allclose(single.predict(x), double.predict(x), atol=1e-3)


def test_bad_parameters_name_the_parameter():
    x, y = iris()
    bad = {
        "learning_rate_init": -1.0,
        "max_iter": 0,
        "hidden_layer_sizes": (0,),
        "activation": "softsign",
        "engine": "magic",
        "batch_size": "big",
        "validation_fraction": 1.5,
        "dtype": "float16",
    }
    for name, value in bad.items():
        model = NnetClassifier(early_stopping=name == "validation_fraction", **{name: value})
        with pytest.raises(ValueError, match=name):
            model.fit(x, y)
    # momentum belongs to sgd: ignored by adam, used by sgd
    assert NnetClassifier((4,), max_iter=1, momentum=0.5).fit(x, y).n_iter_ == 1
    sgd = NnetClassifier((4,), max_iter=50, optimizer="sgd", learning_rate_init=0.1, random_state=0)
    plain = sgd.fit(x, y).net_.weights[0]
    assert sgd.score(x, y) > 0.9
    assert not np.array_equal(sgd.set_params(momentum=0.0).fit(x, y).net_.weights[0], plain)


def test_verbose_prints_every_epoch(capsys):
    x, y = iris()
    NnetClassifier((4,), max_iter=3, verbose=True).fit(x, y)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"Iteration {i}" for i in (1, 2, 3)]


def test_pickle_round_trip():
    x, y = iris()
    model = NnetClassifier((8,), max_iter=3, random_state=0).fit(x, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(x), model.predict_proba(x))
    again.set_params(warm_start=True).fit(x, y)
    assert again.n_iter_ == 6


def test_nnet_itself_never_imports_sklearn():
    modules = "nnet, nnet.apps.cli, nnet.apps.serve, nnet.apps.plots, nnet.apps.bench"
    code = f"import sys, {modules}; assert 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
