"""Internal: a reranker's two score rows, read from its checkpoint's files at load, never its
151k-row lm_head."""

from __future__ import annotations

from pathlib import Path

import torch

from qwen3_core.checkpoints import Checkpoint
from qwen3_core.errors import ModelKindError
from qwen3_core.safetensors_index import weight_files


def score_rows(checkpoint: Checkpoint, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A reranker's float32 rows [no, yes] on ``device``, whose softmax over
    ``state @ rows.T`` is P(yes) (so ``state @ (yes - no)`` is the log-odds), with the values
    the full head would have in ``dtype``:

    - a causal LM: the lm_head rows of the checkpoint's yes/no tokens
      (``Checkpoint.score_token_ids``; the embedding rows when tied);
    - sequence classification, two labels: the score rows of "no" and "yes";
    - sequence classification, one label: rows [0, w], so the log-odds is its score.
    """
    variant, folder = checkpoint.variant, checkpoint.folder
    if variant.architecture == "seq_cls":
        labels = list(range(variant.num_labels))
        weight = _stored_rows(folder, ("score.weight",), labels).to(dtype).float()
        if variant.num_labels == 1:
            rows = torch.stack([torch.zeros_like(weight[0]), weight[0]])
        else:
            rows = weight[[1 - variant.yes_label, variant.yes_label]]
    else:
        yes_id, no_id = checkpoint.score_token_ids()
        tied = checkpoint.config.get("tie_word_embeddings", False)
        names = ("model.embed_tokens.weight", "embed_tokens.weight") if tied else ()
        rows = _stored_rows(folder, (*names, "lm_head.weight"), [no_id, yes_id])
        rows = rows.to(dtype).float()
    return rows.to(device)


def _stored_rows(folder: Path, names: tuple[str, ...], indices: list[int]) -> torch.Tensor:
    """Rows of a 2-d tensor in the folder's safetensors files (the first of ``names`` that
    the files hold), in its stored dtype, read without loading the rest of it."""
    from safetensors import safe_open

    held: dict[str, str] = {}
    for file in weight_files(folder) or ():
        with safe_open(str(folder / file), framework="pt") as handle:
            held.update(dict.fromkeys(handle.keys(), file))
    name = next((name for name in names if name in held), None)
    if name is None:  # recognising the variant checked this; the files changed since
        raise ModelKindError(f"'{folder}' holds none of {', '.join(names)}")
    with safe_open(str(folder / held[name]), framework="pt") as handle:
        tensor = handle.get_slice(name)
        count = tensor.get_shape()[0]
        for row in indices:
            if not 0 <= row < count:
                raise ModelKindError(
                    f"'{folder}': the score reads row {row} of {name}, which has {count} rows"
                )
        return torch.cat([tensor[row : row + 1] for row in indices])
