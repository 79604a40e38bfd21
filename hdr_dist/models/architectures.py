"""The architectures, one parametrised class each: ``CNN``, ``LSTM`` (with 002's ReLU cell) and ``CRNN``.

A recipe (``recipes``) picks one and its arguments; nothing here knows about training.
"""

from __future__ import annotations

import torch
from torch import nn

from hdr_dist.imaging.preprocess import STRIP_HEIGHT


def lstm(features: int, hidden: int, layers: int, bidirectional: bool, dropout: float) -> nn.LSTM:
    """torch's LSTM over (batch, steps, features), with dropout between its layers (none with one)."""
    return nn.LSTM(
        features,
        hidden,
        num_layers=layers,
        batch_first=True,
        bidirectional=bidirectional,
        dropout=dropout if layers > 1 else 0.0,
    )


class CNN(nn.Module):
    """Conv blocks, then an optional dense layer, then the classifier.

    ``blocks`` lists (channels, convs, pool) per block. ``padding=0`` gives Keras'
    "valid" convolutions (002's MNIST CNN), ``padding=1`` "same".

    The classifier's input size is counted, not measured by a forward pass: a checkpoint's model is first
    built on torch's meta device to check its weights (``checkpoints.check_fit``), and a meta convolution
    loads torch's meta kernels, 3 s and 150 MB here, where counting costs nothing.
    """

    def __init__(
        self,
        num_classes: int,
        blocks=((16, 2, True), (32, 2, True)),
        padding: int = 1,
        batchnorm: bool = True,
        hidden: int = 128,
        dropout: float = 0.0,
        dense_dropout: float = 0.0,
    ):
        super().__init__()
        layers, channels, side = [], 1, 28
        for out, convs, pool in blocks:
            for _ in range(convs):
                layers += [nn.Conv2d(channels, out, 3, padding=padding, bias=not batchnorm)]
                layers += [nn.BatchNorm2d(out)] if batchnorm else []
                layers += [nn.ReLU(inplace=True)]
                channels, side = out, side + 2 * padding - 2  # a 3x3 convolution, stride 1
            layers += [nn.MaxPool2d(2)] if pool else []
            side //= 2 if pool else 1
            if side < 1:
                raise ValueError(f"the blocks {blocks} shrink a 28x28 image to nothing")
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = channels * side * side
        head = [nn.Dropout(dropout)] if dropout else []
        if hidden:
            head += [nn.Linear(flat, hidden, bias=not batchnorm)]
            head += [nn.BatchNorm1d(hidden)] if batchnorm else []
            head += [nn.ReLU(inplace=True)] + ([nn.Dropout(dense_dropout)] if dense_dropout else [])
        head += [nn.Linear(hidden or flat, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


class ReluLSTMLayer(nn.Module):
    """An LSTM layer whose cell and output activation is ReLU, as Keras' ``LSTM(activation='relu')``.

    ``nn.LSTM`` hard-wires tanh, so the seed's LSTM needs this explicit loop to be faithful.
    """

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(input_size, 4 * hidden)
        self.rec = nn.Linear(hidden, 4 * hidden, bias=False)

    def forward(self, x):
        gates_x = self.inp(x)  # all time steps at once; only the recurrence is sequential
        h = x.new_zeros(x.shape[0], self.hidden)
        c = torch.zeros_like(h)
        out = []
        for t in range(x.shape[1]):
            i, f, g, o = (gates_x[:, t] + self.rec(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.relu(g)
            h = torch.sigmoid(o) * torch.relu(c)
            out.append(h)
        return torch.stack(out, dim=1)


class LSTM(nn.Module):
    """Reads the image row by row: 28 time steps of 28 pixels, or ``rows_per_step`` rows a step.

    ``readout="last"`` classifies from the final step as 002 does; ``"pool"``
    uses the mean and max over all steps, which lets a bidirectional model see
    every row equally and converges in fewer epochs. Two rows a step (14 steps of 56 pixels) halve
    the sequential recurrence, which is most of an LSTM's time on a CPU (the measured gain is in
    docs/decisions.md).
    """

    def __init__(
        self,
        num_classes: int,
        hidden: int = 128,
        layers: int = 2,
        bidirectional: bool = False,
        activation: str = "tanh",
        dropout: float = 0.0,
        dense: int = 0,
        readout: str = "last",
        input_norm: bool = False,
        rows_per_step: int = 1,
    ):
        super().__init__()
        self.readout, self.activation = readout, activation
        self.steps, features = 28 // rows_per_step, 28 * rows_per_step
        self.norm = nn.LayerNorm(features) if input_norm else nn.Identity()
        width = hidden * (2 if bidirectional else 1)
        if activation == "tanh":
            self.rnn = lstm(features, hidden, layers, bidirectional, dropout)
        elif activation == "relu" and not bidirectional:
            stack = []
            for n in range(layers):
                stack += [ReluLSTMLayer(features if n == 0 else hidden, hidden)]
                stack += [nn.Dropout(dropout)] if dropout and n < layers - 1 else []
            self.rnn = nn.Sequential(*stack)
        else:
            raise ValueError(f"unsupported LSTM activation {activation!r} (bidirectional={bidirectional})")
        features = width * (2 if readout == "pool" else 1)
        head = [nn.Dropout(dropout)] if dropout else []
        if dense:
            head += [nn.Linear(features, dense), nn.ReLU(inplace=True)]
            head += [nn.Dropout(dropout)] if dropout else []
        head += [nn.Linear(dense or features, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        seq = self.norm(x.reshape(x.shape[0], self.steps, -1))  # (N, 1, 28, 28) -> steps of whole rows
        out = self.rnn(seq)
        out = out[0] if isinstance(out, tuple) else out
        pooled = self.readout == "pool"
        feats = torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1) if pooled else out[:, -1]
        return self.classifier(feats)


class CRNN(nn.Module):
    """Reads a field of digits, segmentation-free: a CNN over a 32-row strip of any width, a BiLSTM
    along the width, and per step the classes plus CTC's blank (the last index).

    The CNN is the digit ``cnn``'s, slid along the field: ``blocks`` as in ``CNN`` (two 2x2
    poolings take 32 rows to 8), then its dense layer as a convolution ``window`` steps wide
    over every row, so each step sees what the digit model's classifier sees of one digit
    (7 steps of 4 columns: 28 pixels). One step per 4 columns gives a digit squeezed to 12
    columns three steps, enough for CTC to part two equal digits in a row.

    Given each strip's ``widths``, the LSTM runs over each strip's own steps only (packed), and the
    convolutions see zeros beyond a strip, which is paper, because field models standardise without
    centring (``TrainConfig``): a field reads the same, to 1e-3 of a logit at its right edge,
    whatever else shares its batch.
    """

    def __init__(
        self,
        num_classes: int,
        blocks=((16, 2, True), (32, 2, True)),
        window: int = 7,
        features: int = 128,
        hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.1,
    ):
        super().__init__()
        convs, channels, self.step = [], 1, 1
        for out, n, pool in blocks:
            for _ in range(n):
                convs += [
                    nn.Conv2d(channels, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                channels = out
            convs += [nn.MaxPool2d(2)] if pool else []
            self.step *= 2 if pool else 1
        self.features = nn.Sequential(*convs)
        rows = STRIP_HEIGHT // self.step
        self.window = nn.Sequential(
            nn.Conv2d(channels, features, (rows, window), padding=(0, window // 2), bias=False),
            nn.BatchNorm2d(features),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.rnn = lstm(features, hidden, layers, True, dropout)
        self.classifier = nn.Linear(2 * hidden, num_classes + 1)

    def forward(self, x, widths: torch.Tensor | None = None):
        seq = self.dropout(self.window(self.features(x))[:, :, 0].transpose(1, 2))  # (N, W / 4, features)
        if widths is None:
            out, _ = self.rnn(seq)
        else:
            steps = torch.div(widths, self.step, rounding_mode="floor").clamp(1, seq.shape[1]).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(seq, steps, batch_first=True, enforce_sorted=False)
            out, _ = nn.utils.rnn.pad_packed_sequence(
                self.rnn(packed)[0], batch_first=True, total_length=seq.shape[1]
            )
        return self.classifier(self.dropout(out))  # (N, W / 4, classes + blank)


ARCHITECTURES = {"cnn": CNN, "lstm": LSTM, "crnn": CRNN}


def keras_init(model: nn.Module) -> None:
    """Keras' defaults: Glorot-uniform kernels, orthogonal recurrent weights, zero biases
    except the LSTM forget gate's, which starts at 1 (``unit_forget_bias``)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, ReluLSTMLayer):
            nn.init.orthogonal_(module.rec.weight)
            nn.init.ones_(module.inp.bias[module.hidden : 2 * module.hidden])
