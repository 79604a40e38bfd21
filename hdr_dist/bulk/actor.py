"""The inference actor every bulk job's pool is made of: it loads its model states once, from the
object store, on its device, with as many torch threads as CPUs it reserved, and knows its node. A
bulk job's actor (score's ``Predictor``, forms' ``FormReader``) subclasses it and says only what it
answers; the answers themselves are the readers' (``inference.readers``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hdr_dist.inference import readers
from hdr_dist.inference.device import for_inference
from hdr_dist.inference.onnx_runtime import OnnxModel
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig

NODE = "node"  # the column naming the node whose actor made a row: counted by the driver, not written


@dataclass(frozen=True)
class Loaded:
    """A model at work in an actor, composed as a predictor is: the model (torch, or onnxruntime in its
    place), its config, its reader (pre- and post-processing by kind) and its calibrated temperature."""

    model: torch.nn.Module | OnnxModel
    cfg: TrainConfig
    reader: readers.DigitReader | readers.FieldReader
    temperature: float


class InferenceActor:
    """The common start of a bulk job's inference actors."""

    def __init__(self, use_gpu: bool, threads: int = 1):
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.threads = threads
        if not use_gpu:
            torch.set_num_threads(threads)  # as many as the actor reserved; more would steal decoding's
        self.node = node_name()

    def load(self, state) -> Loaded:
        """A model from its checkpoint state. The job hands the state over as ``[object ref]``: in a
        list, Ray passes the reference rather than the weights, and each actor fetches them once from
        the object store; a plain loop (the benchmarks) hands the state itself. A state carrying the
        model exported to ONNX (``score --runtime onnx``) is run by onnxruntime instead of torch."""
        if isinstance(state, list):
            import ray

            state = ray.get(state[0])
        model, cfg = checkpoints.model_from_state(state)
        runner = OnnxModel(state.onnx, self.threads) if state.onnx else for_inference(model, self.device)
        # A checkpoint from before calibration has no temperature: its confidences are the plain softmax.
        return Loaded(runner, cfg, readers.of(cfg), state.temperature or 1.0)


def node_name() -> str:
    """This process's node, as the driver counts it: its address and the start of its id."""
    import ray

    if not ray.is_initialized():
        return "local"
    return f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:8]}"
