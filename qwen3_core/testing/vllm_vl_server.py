"""Internal: vLLM's OpenAI-compatible server on a Qwen3-VL model, for the tests of the Qwen3-VL
engines' server client.

vLLM's Qwen3-VL module imports transformers' Qwen2-VL image processor, which transformers 5
builds on torchvision; vLLM's CPU build has no torchvision to go with its torch. For tests on
CPU, ``pil_stand_in=True`` puts transformers' Pillow image processor where vLLM imports the
torchvision one from, and the real video processor classes in place of the placeholders
transformers exports without torchvision, in every process of the server (through a
``sitecustomize`` module in a folder put on the server's ``PYTHONPATH`` only: the engine
core runs in a spawned child). This only swaps which transformers class decodes pixels into
patches; the images the client sends are already sized, so both compute the same patches.
"""

from __future__ import annotations

import json
from pathlib import Path

from qwen3_core.multimodal.server import VL_RERANKER_OVERRIDES, VL_TRUST_FLAGS
from qwen3_core.testing.vllm_server import VllmServer

PIL_STAND_IN = """\
import sys, types
import transformers.models.qwen2_vl.image_processing_pil_qwen2_vl as _pil
_name = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
_module = types.ModuleType(_name)
_module.smart_resize = _pil.smart_resize
_module.Qwen2VLImageProcessor = _pil.Qwen2VLImageProcessorPil
sys.modules[_name] = _module
import transformers, transformers.models.qwen3_vl as _qwen3_vl
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor as _v
_qwen3_vl.Qwen3VLVideoProcessor = transformers.Qwen3VLVideoProcessor = _v
import transformers.models.auto as _auto
import transformers.models.auto.video_processing_auto as _vauto
for _n in ("VIDEO_PROCESSOR_MAPPING", "AutoVideoProcessor"):
    setattr(_auto, _n, getattr(_vauto, _n))
    setattr(transformers, _n, getattr(_vauto, _n))
import transformers.video_processing_utils as _vpu
for _n in ("BaseVideoProcessor", "VideoProcessorMixin"):
    setattr(transformers, _n, getattr(_vpu, _n))
"""
"""Run at the start of every Python process of the server (its ``sitecustomize``)."""


class VllmVLServer(VllmServer):
    """``VllmServer`` on a Qwen3-VL embedding model or reranker, with the flags the Qwen3-VL
    server client needs: ``--trust-request-chat-template`` and ``--trust-request-mm-kwargs``
    (see ``qwen3_core.multimodal.server``), ``--limit-mm-per-prompt`` and, for the reranker, the
    yes/no classifier overrides on ``Qwen3VLForSequenceClassification``.

    Args:
        model: The model folder to serve.
        reranker: Serve a reranker rather than an embedding model.
        scratch: The folder for the server's temporary files, caches, log and stand-in.
        max_model_len: The longest sequence the server accepts, in tokens.
        images_per_prompt: The most images one prompt may hold.
        pil_stand_in: Run vLLM with transformers' Pillow image processor in place of the
            torchvision one (for vLLM builds without torchvision).
    """

    def __init__(
        self,
        model: Path,
        *,
        reranker: bool,
        scratch: Path,
        max_model_len: int,
        images_per_prompt: int = 4,
        pil_stand_in: bool = True,
    ) -> None:
        super().__init__(model, reranker=False, scratch=scratch, max_model_len=max_model_len)
        limits = {"image": images_per_prompt, "video": 0}
        self.args += ["--limit-mm-per-prompt", json.dumps(limits), *VL_TRUST_FLAGS]
        if reranker:
            self.args += ["--hf-overrides", json.dumps(VL_RERANKER_OVERRIDES)]
        if pil_stand_in:
            site = scratch / f"site-{self.port}"
            site.mkdir(parents=True, exist_ok=True)
            (site / "sitecustomize.py").write_text(PIL_STAND_IN)
            path = self.env.get("PYTHONPATH")
            self.env["PYTHONPATH"] = ":".join(filter(None, [str(site), path]))
