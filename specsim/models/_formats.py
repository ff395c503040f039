"""Storage formats of weights, KV cache and activations: bytes per element.

Block-scaled formats store a shared scale per block of elements, so their cost per
element is the element width plus the scale width divided by the block size:

* ``mxfp4`` (OCP Microscaling MXFP4, the routed experts of gpt-oss): FP4 (E2M1)
  elements in blocks of 32 sharing one 8-bit E8M0 scale: ``(32 * 4 + 8) / 32 = 4.25``
  bits = 0.53125 bytes.
* ``nvfp4`` (NVIDIA NVFP4): FP4 (E2M1) elements in blocks of 16 sharing one FP8
  (E4M3) scale, plus one FP32 scale per tensor (negligible): ``(16 * 4 + 8) / 16 = 4.5``
  bits = 0.5625 bytes.
* ``fp8_block`` (DeepSeek-V3's released weights, ``weight_block_size = [128, 128]``):
  FP8 (E4M3) elements with one FP32 scale per 128 x 128 block: ``1 + 4 / 16384`` bytes.

``int4`` is counted at 0.5 bytes without the scales and zero points of a grouped
quantiser (gpt-fast's ``int4`` G=32 adds 1 byte per 32 elements); use the block
formats above where the scales should be priced.

References:
    OCP Microscaling Formats (MX) v1.0 specification (2023), section 5 (MXFP4: k = 32,
    E8M0 scale). NVIDIA, "Introducing NVFP4 for efficient and accurate low-precision
    inference" (2025): 16-element micro-blocks with an E4M3 scale and an FP32
    per-tensor scale. DeepSeek-AI, DeepSeek-V3 technical report (arXiv 2412.19437),
    section 3.3.2: 128 x 128 block-wise weight scaling; its ``config.json``
    ``quantization_config.weight_block_size = [128, 128]``.
"""

from __future__ import annotations

MXFP4_BLOCK = 32
NVFP4_BLOCK = 16
FP8_BLOCK = 128 * 128

BYTES_PER_ELEMENT = {
    "fp32": 4.0,
    "float32": 4.0,
    "bf16": 2.0,
    "bfloat16": 2.0,
    "fp16": 2.0,
    "float16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "mxfp4": (MXFP4_BLOCK * 0.5 + 1.0) / MXFP4_BLOCK,  # E8M0 scale: 1 byte per 32
    "nvfp4": (NVFP4_BLOCK * 0.5 + 1.0) / NVFP4_BLOCK,  # E4M3 scale: 1 byte per 16
    "fp8_block": 1.0 + 4.0 / FP8_BLOCK,  # FP32 scale per 128 x 128 block
}
# Formats that only make sense for weights (block scales are per weight block).
WEIGHT_ONLY_FORMATS = ("int4", "mxfp4", "nvfp4", "fp8_block")


def dtype_bytes(dtype: str, what: str) -> float:
    """Bytes per element of the storage format ``dtype`` (case-insensitive).

    Args:
        dtype: a key of ``BYTES_PER_ELEMENT``.
        what: the argument's name, for the error message.

    Raises:
        ValueError: unknown format (the message lists the valid ones).

    Examples:
        >>> dtype_bytes("mxfp4", "weight_dtype")
        0.53125
    """
    try:
        return BYTES_PER_ELEMENT[dtype.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown {what} {dtype!r}; valid: {', '.join(sorted(BYTES_PER_ELEMENT))}"
        ) from None
