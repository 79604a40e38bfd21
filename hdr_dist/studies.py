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
    "000": "Toyobo et al., Performance Comparison of CNN and LSTM for the Classification of Handwritten Digits",
    "002": "HDaLR: Impact of Machine Learning and Deep Learning Models on Handwritten Digits and Letters Recognition",
}

# Test (or validation, where that is all a study gives) accuracy each study reports, in %, by the
# model of ours it is set beside. 002's headline "CNN 99.9 %" is its *training* accuracy; its
# held-out figure is 99.05 %.
STUDY_FIGURES = {
    "cnn": ("000 CNN", 99.31),
    "lstm": ("000 LSTM", 98.90),
    "cnn-seed": ("002 CNN (val)", 99.05),
    "lstm-seed": ("002 LSTM (val)", 97.6),
    "cnn-emnist-seed": ("002 CNN EMNIST", 88.0),
    # 002's Table 2; its ANN (mlp) has no reported figure.
    "nb": ("002 NB", 80.6),
    "dt": ("002 DT", 85.2),
    "rf": ("002 RF", 94.1),
    "knn": ("002 KNN", 96.9),
    "svm-linear": ("002 SVM lin.", 91.3),
    "svm-rbf": ("002 SVM RBF", 94.4),
}
