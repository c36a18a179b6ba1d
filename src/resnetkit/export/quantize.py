"""Post-training static int8 quantization, calibrated on real samples, for both runtimes.

- PyTorch: PT2E (``torch.export`` + torchao's ``X86InductorQuantizer``): per-channel int8
  weights, uint8 activations with ranges observed on the calibration samples; the result
  runs on oneDNN's int8 convolutions once lowered (``torch.compile`` with freezing, or
  :func:`lower_int8` without compiling).
- ONNX: onnxruntime's ``quantize_static`` in QDQ format with per-channel weights.

On CPUs without VNNI (AVX2 only) both run int8 through ``vpmaddubsw``, whose 16-bit
intermediate sums can saturate. There both quantizers get ``reduce_range``, as their
documentation advises: 7-bit activations for PT2E (torchao: "set it to True on earlier CPUs
without VNNI to avoid accuracy issue"), 7-bit weights for onnxruntime. Measured on a
CIFAR-10 ResNet-20 on an AVX2 machine: 85.80% fp32, 81.16% int8 without it (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from .formats import batch_dim

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 32


def calibration_batches(calibration: Any, input_shape: Sequence[int] | None = None,
                        name: str = "calibration") -> list[torch.Tensor]:
    """``calibration`` as a list of float input batches, checked against ``input_shape`` (one input, no batch axis).

    Accepts a tensor of inputs ``(N, ...)``, or an iterable of tensors or of ``(inputs, labels)``
    pairs (a batch source's epoch, a DataLoader). Empty sets and inputs of another shape are
    refused with a ValueError that says what was expected.
    """
    if calibration is None:
        raise ValueError(f"int8 needs {name} samples: a tensor of model inputs or an iterable of batches "
                         "(real training samples, a few hundred suffice)")
    if isinstance(calibration, torch.Tensor):
        items: Iterable = calibration.split(CALIBRATION_BATCH) if calibration.ndim > 0 and len(calibration) else []
    elif isinstance(calibration, (str, bytes, Path)) or not isinstance(calibration, Iterable):
        raise ValueError(f"{name} must be a tensor of model inputs or an iterable of batches, "
                         f"got {type(calibration).__name__}")
    else:
        items = calibration
    batches = []
    for item in items:
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            what = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} batches must be float tensors of model inputs, got {what}")
        if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
            raise ValueError(f"{name} inputs have shape {tuple(x.shape[1:])}, the model takes "
                             f"{tuple(input_shape)} (one input, without the batch axis): "
                             "they are not samples of the data this model was trained on")
        if len(x):
            batches.append(x.detach().float().cpu())
    if not batches:
        raise ValueError(f"the {name} set is empty: int8 quantization needs real samples to observe activation ranges")
    return batches


def example_batch(batches: list[torch.Tensor]) -> torch.Tensor:
    """Two inputs to trace with: torch.export specializes dimensions of size 1, so never one."""
    if sum(len(b) for b in batches) >= 2:
        return torch.cat(batches)[:2]
    return batches[0].repeat(2, *([1] * (batches[0].ndim - 1)))


@torch.no_grad()
def quantize_pt2e(model: nn.Module, calibration: Any, input_shape: Sequence[int] | None = None) -> torch.fx.GraphModule:
    """The PT2E int8 form of ``model`` (fp32, CPU), calibrated on ``calibration``.

    The result still holds quantize/dequantize pairs around fp32 ops (exact int8 semantics,
    fp32 speed); :func:`lower_int8` turns them into oneDNN int8 kernels.
    """
    with _quiet("torch.utils._pytree"):  # torchao 0.18 registers an Enum the way torch 2.14 warns about
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

    batches = calibration_batches(calibration, input_shape)
    model = copy.deepcopy(model).float().cpu().eval()
    example = example_batch(batches)
    captured = torch.export.export(model, (example,), dynamic_shapes=({0: batch_dim()},)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config(reduce_range=not cpu_has_vnni()))
    prepared = prepare_pt2e(captured, quantizer)
    for x in batches:
        prepared(x)
    return convert_pt2e(prepared)


def lower_int8(converted: torch.fx.GraphModule, example: torch.Tensor) -> torch.fx.GraphModule:
    """Replace the quantize/dequantize patterns of a PT2E model by oneDNN's int8 ops, keeping the batch axis dynamic.

    torchao's ``lower_pt2e_quantized_to_x86`` does the same with a batch size fixed to the
    example's; this is its recipe (ATen decomposition, inductor's freezing passes, constant
    folding) with a dynamic batch axis, so one module serves every batch size.
    """
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes

    # Registers the int8 patterns (qconv/qlinear with their fused post-ops) with the freezing passes.
    import torchao.quantization.pt2e.inductor_passes.x86  # noqa: F401

    table = torch.export.default_decompositions()
    for op in list(table):
        if not torch._export.utils._is_cia_op(op):
            del table[op]
    lowered = torch.export.export(converted, (example,), dynamic_shapes=({0: batch_dim()},),
                                  strict=True).run_decompositions(table).module()
    graph = lowered.graph
    for node in list(graph.nodes):
        if node.target == torch.ops.aten.t.default:  # the patterns expect permute
            with graph.inserting_before(node):
                permute = graph.call_function(torch.ops.aten.permute.default, args=(node.args[0], [1, 0]))
            node.replace_all_uses_with(permute)
            graph.erase_node(node)
    graph.lint()
    lowered.recompile()
    freezing_passes(lowered, (example,))
    constant_fold(lowered)
    return lowered


class FrozenInt8(nn.Module):
    """An int8 model whose weights are frozen for oneDNN (prepacked, or constants of a compiled graph).

    The model is kept out of this module's children: ``.to(device / memory_format)``,
    ``.train()`` and ``.parameters()`` pass it by, since its weights can be neither moved
    nor re-laid out (a prepacked weight is an mkldnn tensor) and need neither.
    """

    def __init__(self, model: nn.Module, compile: bool = False) -> None:
        super().__init__()
        object.__setattr__(self, "frozen", torch.compile(model) if compile else model)
        self.compiled = compile

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compiled:
            return self.frozen(x)
        import torch._inductor.config as inductor_config

        # Inductor's int8 patterns need frozen weights; freezing applies when it compiles, which
        # happens on a call (and again for a new batch size).
        with torch.no_grad(), inductor_config.patch(freezing=True):
            return self.frozen(x)


# -- ONNX -------------------------------------------------------------------------------------


def cpu_has_vnni() -> bool:
    """AVX-512 VNNI or AVX-VNNI: int8 dot products without 16-bit saturation."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


def quantize_onnx(src: str | Path, dst: str | Path, calibration: Any, input_shape: Sequence[int] | None = None,
                  reduce_range: bool | None = None) -> None:
    """Static int8 quantization of the ONNX model ``src`` into ``dst`` (QDQ, per-channel int8 weights, uint8 activations).

    ``reduce_range`` (7-bit weights): default on CPUs without VNNI, where 8-bit weights can
    saturate onnxruntime's int8 kernels.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = calibration_batches(calibration, input_shape)
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.name = name
            self.items: Iterator = iter(batches)

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {self.name: x.numpy()}

        def rewind(self) -> None:
            self.items = iter(batches)

    import onnx

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph optimization first, as onnxruntime's quantization guide asks.
        # Its symbolic shape inference fails on some front-end ops of waveform graphs (ReduceSum
        # with axes it cannot resolve); ONNX's own shape inference then does.
        with _quiet():
            try:
                quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
            except Exception as err:  # onnxruntime's tools raise TypeError/KeyError/... from inside
                log.info("symbolic shape inference failed (%s: %s); using ONNX shape inference",
                         type(err).__name__, err)
                quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(dst), Reader(input_name), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=_front_end_nodes(prepared))


def _front_end_nodes(path: Path) -> list[str]:
    """The nodes before the first convolution: an audio graph's feature front end (STFT, power,
    mel matrix, dB, normalization), which stays in float. In 8 bits the mel power spectrum and
    its logarithm lose the quiet bands entirely (measured: top-1 agreement 75% with them
    quantized). Image graphs have nothing there."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    first_conv = next((i for i, n in enumerate(nodes) if n.op_type == "Conv"), 0)
    return [n.name for n in nodes[:first_conv] if n.name]


@contextlib.contextmanager
def _quiet(name: str | None = None):
    """Only errors from logger ``name`` (the root logger, where onnxruntime's quantization tools log every node)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)
