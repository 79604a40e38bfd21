"""Data sets and what is made from them: MNIST and EMNIST, augmentation (moves, and a form cell's
artefacts), synthetic fields of digits, scan-like samples, and the hostile inputs the tests and a
benchmark build.
"""
