"""CUDA graphs: an attack loop captured once per model and input shapes, then replayed.

A replay launches the whole recorded kernel sequence at once: for small models at small batches
(LeNet-5, batch 100) a GPU otherwise waits on Python and kernel launches.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable

import torch
from torch import nn


CUDA_GRAPH_WARMUP = 3  # eager runs on a side stream before capture (lazy cuBLAS / cuDNN set-up)
MAX_GRAPHS_PER_MODULE = 8  # input signatures captured per module; further ones run eagerly


class CapturedCall:
    """`fn(*inputs)` captured once as a CUDA graph, then replayed on new inputs of the same shapes.

    A replay launches the whole recorded kernel sequence at once: for small models at small
    batches (LeNet-5, batch 100) a GPU otherwise waits on Python and kernel launches. `fn` must
    run on CUDA tensors only, never synchronise with the host, and read every other tensor
    (parameters, BatchNorm statistics, folded weights) from memory that is updated in place,
    as optimizers and `load_state_dict` do. Autocast, if on, applies without its weight cache
    (cached casts would be freed after capture); the graph keeps the precision it was captured in.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> None:
        self.inputs = tuple(t.detach().clone() for t in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), _autocast_without_cache():
            for _ in range(CUDA_GRAPH_WARMUP):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), _autocast_without_cache():
            self.output = fn(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        return self.output.clone()


def _autocast_state() -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")


def _autocast_without_cache() -> contextlib.AbstractContextManager:
    enabled, dtype = _autocast_state()
    return torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)


_CAPTURED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, CapturedCall]] = weakref.WeakKeyDictionary()


def replay_captured(module: nn.Module, key: tuple, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """`fn(*inputs)` (a computation with `module`) through a CUDA graph (`CapturedCall`).

    One graph per `module`, `key` (what `fn` computes), autocast state and input shapes, dtypes
    and devices, captured at its first call; graphs go with `module`. Beyond
    `MAX_GRAPHS_PER_MODULE` signatures, `fn` runs eagerly. The result is a fresh tensor equal
    to what `fn(*inputs)` returns, up to kernel-level nondeterminism.
    """
    graphs = _CAPTURED.setdefault(module, {})
    signature = (key, _autocast_state(), tuple((t.shape, t.dtype, t.device) for t in inputs))
    captured = graphs.get(signature)
    if captured is None:
        if len(graphs) >= MAX_GRAPHS_PER_MODULE:
            return fn(*inputs)
        try:
            captured = graphs[signature] = CapturedCall(fn, inputs)
        except RuntimeError as error:
            raise RuntimeError(
                f"could not capture {type(module).__name__} in a CUDA graph ({error}); "
                "run without cuda_graphs (--cuda-graphs)"
            ) from error
    return captured(*inputs)


