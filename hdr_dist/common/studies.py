"""The two studies hdr-dist reproduces, and the figure each reports for each model.

The project calls them its *seed studies*: the work it grew from. Their short names
are the file names they came as:

- **000**: Toyobo et al., "Performance Comparison of CNN and LSTM for the
  Classification of Handwritten Digits" (IJRIAS 2025): a CNN and an LSTM on MNIST.
- **002**: "Impact of Machine Learning and Deep Learning Models on Handwritten
  Digits and Letters Recognition" (**HDaLR**, 2024): naive Bayes, decision tree,
  random forest, KNN, linear and RBF SVMs, an MLP, a CNN and an LSTM on MNIST,
  and a CNN on EMNIST (47 classes).

A model named ``*-seed`` (``cnn-seed``, ``lstm-seed``, ``cnn-emnist-seed``) is 002's
Keras model rebuilt layer for layer at 002's settings; ``--seed`` is, as everywhere,
the random seed.
"""

from __future__ import annotations

STUDIES = {
    "000": (
        "Toyobo et al., Performance Comparison of CNN and LSTM for the Classification of Handwritten Digits"
    ),
    "002": (
        "HDaLR: Impact of Machine Learning and Deep Learning Models on Handwritten Digits and Letters "
        "Recognition"
    ),
}

# Test (or validation, where that is all a study gives) accuracy each study reports on MNIST, in %,
# by the model of ours it is set beside. 002's headline "CNN 99.9 %" is its *training* accuracy; its
# held-out figure is 99.05 %.
STUDY_FIGURES = {
    "cnn": ("000 CNN", 99.31),
    "lstm": ("000 LSTM", 98.90),
    "cnn-seed": ("002 CNN (val)", 99.05),
    "lstm-seed": ("002 LSTM (val)", 97.6),
    # 002's Table 2; its ANN (mlp) has no reported figure.
    "nb": ("002 NB", 80.6),
    "dt": ("002 DT", 85.2),
    "rf": ("002 RF", 94.1),
    "knn": ("002 KNN", 96.9),
    "svm-linear": ("002 SVM lin.", 91.3),
    "svm-rbf": ("002 SVM RBF", 94.4),
}

# 002's one EMNIST figure: its CNN on EMNIST Balanced's 47 classes. A CNN of ours trained on 47 EMNIST
# classes stands beside it, whichever split it had; the row's dataset name says which, and the
# README says how the splits differ.
EMNIST_47 = ("emnist-balanced", "emnist-bymerge")
EMNIST_FIGURE = ("002 CNN EMNIST Balanced", 88.0)
CNN_MODELS = ("cnn", "cnn-seed", "cnn-emnist-seed")


def seed_figure(dataset: str, model: str) -> tuple[str, float] | None:
    """The seed figure a result on ``dataset`` (its name as the outputs give it) is set beside."""
    if dataset.startswith(EMNIST_47):
        return EMNIST_FIGURE if model in CNN_MODELS else None
    return STUDY_FIGURES.get(model) if dataset == "mnist" else None
