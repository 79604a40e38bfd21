"""Every named model builds and maps (N, 1, 28, 28) to (N, classes)."""

from __future__ import annotations

import pytest
import torch

from hdr_dist import models
from hdr_dist.common.errors import UserError


@pytest.mark.parametrize("name", [n for n, r in models.RECIPES.items() if r.kind == "digit"])
@pytest.mark.parametrize("classes", [10, 47])
def test_forward_shape(name, classes):
    """The digit models; a field model's shapes are tests/test_fields.py's."""
    model = models.build(name, classes).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, classes)
    assert torch.isfinite(out).all()


def test_seed_cnn_is_002s_keras_model_layer_for_layer():
    # 002 prints "Total trainable parameters are 3,75,727" for its MNIST CNN (47 outputs).
    assert models.count_params(models.build("cnn-seed", 47)) == 375_727


def test_seed_lstm_is_relu_lstm_with_keras_init():
    model = models.build("lstm-seed", 10)
    layer = model.rnn[0]
    assert isinstance(layer, models.ReluLSTMLayer)
    h = layer.hidden
    assert torch.all(layer.inp.bias[h : 2 * h] == 1)
    assert torch.all(layer.inp.bias[:h] == 0)
    w = layer.rec.weight  # orthogonal columns
    assert torch.allclose(w.T @ w, torch.eye(h), atol=1e-4)


@pytest.mark.parametrize("rows", [1, 2])
def test_lstm_reads_rows_as_time_steps(rows):
    """Permuting rows changes a row-reading LSTM's output; the input is 28 / rows steps of whole rows."""
    torch.manual_seed(0)
    model = models.build("lstm", 10, rows_per_step=rows).eval()
    assert model.rnn.input_size == 28 * rows
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x.flip(2)))
    assert models.recipe("lstm").settings["rows_per_step"] == 2
    assert models.build("lstm", 10).steps == 14


def test_unknown_model():
    with pytest.raises(UserError, match="unknown model 'resnet'"):
        models.build("resnet", 10)
