"""The seeds' formulas, written out independently of qwen3_core, one input at a time.

Seed 002 (embedding): tokenizer with its own <|endoftext|> post-processor, truncation to
max_length, last-token pooling, optional dimension cut, L2 normalisation.
Seed 000 (reranker): prefix/suffix token ids around the tokenised, truncated body; full
logits at the last position; log_softmax over [no, yes]; exp of the yes entry. The log-odds
is the yes entry minus the no entry of those same float32 logits.
Sequence-classification conversions: the same prompt through transformers'
Qwen3ForSequenceClassification; one label, P(yes) = sigmoid(score) and the log-odds is the
score; two labels ordered [no, yes], P(yes) = softmax(scores)[1] and the log-odds is
scores[1] - scores[0].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


class ReferenceEmbedder:
    def __init__(self, path: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left")
        self.model = AutoModel.from_pretrained(str(path), dtype=torch.float32).eval()

    @torch.no_grad()
    def hidden(self, text: str, max_length: int = 8192) -> torch.Tensor:
        batch = self.tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        return self.model(**batch).last_hidden_state[0, -1]

    def embed(self, text: str, *, max_length: int = 8192, dim: int | None = None) -> torch.Tensor:
        out = self.hidden(text, max_length)
        if dim is not None:
            out = out[:dim]
        return F.normalize(out, p=2, dim=0)

    def query(self, query: str, instruction: str = INSTRUCTION, **kwargs: int) -> torch.Tensor:
        return self.embed(f"Instruct: {instruction}\nQuery:{query}", **kwargs)


class ReferenceReranker:
    def __init__(self, path: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        self.prefix = self.tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix = self.tokenizer.encode(SUFFIX, add_special_tokens=False)
        self.yes = self.tokenizer.convert_tokens_to_ids("yes")
        self.no = self.tokenizer.convert_tokens_to_ids("no")

    def prompt_ids(
        self, query: str, document: str, *, instruction: str = INSTRUCTION, max_length: int = 8192
    ) -> list[int]:
        body = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
        # Literal user text (split_special_tokens), as the project requires.
        ids = self.tokenizer(
            body,
            add_special_tokens=False,
            split_special_tokens=True,
            truncation=True,
            max_length=max_length - len(self.prefix) - len(self.suffix),
        ).input_ids
        return self.prefix + ids + self.suffix

    @torch.no_grad()
    def score(self, query: str, document: str, **kwargs: object) -> float:
        ids = torch.tensor([self.prompt_ids(query, document, **kwargs)])  # type: ignore[arg-type]
        logits = self.model(input_ids=ids).logits[:, -1, :]
        pair = torch.stack([logits[:, self.no], logits[:, self.yes]], dim=1)
        return float(F.log_softmax(pair, dim=1)[0, 1].exp())

    @torch.no_grad()
    def logit(self, query: str, document: str, **kwargs: object) -> float:
        """logit("yes") - logit("no") at the last position, from the full float32 logits."""
        ids = torch.tensor([self.prompt_ids(query, document, **kwargs)])  # type: ignore[arg-type]
        logits = self.model(input_ids=ids).logits[0, -1, :]
        return float(logits[self.yes] - logits[self.no])


class ReferenceSeqClsReranker(ReferenceReranker):
    def __init__(self, path: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left")
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(path), dtype=torch.float32
        ).eval()
        self.prefix = self.tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix = self.tokenizer.encode(SUFFIX, add_special_tokens=False)

    @torch.no_grad()
    def score(self, query: str, document: str, **kwargs: object) -> float:
        ids = torch.tensor([self.prompt_ids(query, document, **kwargs)])  # type: ignore[arg-type]
        logits = self.model(input_ids=ids).logits[0]
        if logits.shape[0] == 1:
            return float(torch.sigmoid(logits[0]))
        return float(F.softmax(logits, dim=0)[1])

    @torch.no_grad()
    def logit(self, query: str, document: str, **kwargs: object) -> float:
        """One label: the score itself; two labels [no, yes]: score[yes] - score[no]."""
        ids = torch.tensor([self.prompt_ids(query, document, **kwargs)])  # type: ignore[arg-type]
        logits = self.model(input_ids=ids).logits[0]
        if logits.shape[0] == 1:
            return float(logits[0])
        return float(logits[1] - logits[0])


def official(
    reference: ReferenceReranker, query: str, documents: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(log-odds, P(yes)) of each document by the official formula, in float32."""
    log_odds = np.array([reference.logit(query, d) for d in documents], dtype=np.float32)
    p_yes = np.array([reference.score(query, d) for d in documents], dtype=np.float32)
    return log_odds, p_yes
