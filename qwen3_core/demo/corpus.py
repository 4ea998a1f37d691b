"""Internal: the demo's corpora: the sample (18 short documents in Chinese and English and one long one)
with its two queries, and users' corpus files, each document with the name users know it by."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qwen3_core.errors import CorpusError
from qwen3_core.evaluation.beir import document_text
from qwen3_core.validation import check_text

SAMPLE_DOCUMENTS: tuple[str, ...] = (
    # The capital of China
    "北京是中华人民共和国的首都，也是中国的政治、文化和教育中心。北京有着三千多年的历史，是中国四大古都之一。",
    "中国的首都是北京，北京位于华北地区，是全国的政治中心。天安门广场和故宫都位于北京。",
    "Beijing is the capital city of China and serves as the political and cultural center of the country.",
    # Physics
    "万有引力定律是由牛顿发现的，它描述了宇宙中任何两个物体之间都存在相互吸引的力。这个力与两物体质量的乘积成正比，与距离的平方成反比。",
    "重力是地球对物体的吸引力，使物体有重量。重力加速度在地球表面约为9.8米每秒的平方。",
    "Gravity is a fundamental force of nature that causes objects with mass to attract each other. On Earth, gravity gives weight to physical objects.",
    # Artificial intelligence
    "人工智能(AI)是计算机科学的一个分支，旨在创建能够执行通常需要人类智能的任务的系统。",
    "机器学习是人工智能的一个子领域，它使计算机能够在没有明确编程的情况下学习和改进。",
    "Large Language Models (LLMs) are AI systems trained on vast amounts of text data to understand and generate human-like text.",
    # Programming
    "Python是一种高级编程语言，以其简洁的语法和强大的功能而闻名。它广泛用于数据科学、Web开发和人工智能。",
    "JavaScript是一种编程语言，主要用于Web开发，可以在浏览器和服务器端运行。",
    "深度学习框架如PyTorch和TensorFlow为研究人员和开发者提供了构建神经网络的工具。",
    # History
    "中国有五千年的悠久历史，创造了灿烂的古代文明。从夏朝开始，中国经历了多个朝代的更替。",
    "长城是中国古代的军事防御工程，是中国古代文明的象征，也是世界文化遗产。",
    "The Great Wall of China is one of the most famous landmarks in the world and represents ancient Chinese civilization.",
    # Technology
    "量子计算是一种利用量子力学原理进行信息处理的计算方式，有潜力解决传统计算机无法处理的复杂问题。",
    "5G技术是第五代移动通信技术，提供更快的数据传输速度和更低的延迟。",
    "区块链技术是一种分布式账本技术，最初为比特币等加密货币提供支持，现在应用于多个领域。",
)

SAMPLE_QUERIES: tuple[str, ...] = ("中国的首都是哪里？", "什么是重力？")

LONG_SAMPLE_DOCUMENT = (
    "Astronomy is among the oldest sciences. Babylonian scribes recorded the motions of the "
    "planets on clay tablets, Chinese court astronomers kept records of eclipses and comets "
    "for more than two thousand years, and Greek geometers built models of nested spheres to "
    "predict where each planet would appear. In the sixteenth century Copernicus placed the "
    "Sun at the centre, and Kepler found that the planets move on ellipses, sweeping equal "
    "areas in equal times. What held them on those paths remained a mystery. Newton's answer "
    "was gravity: every mass attracts every other mass with a force proportional to the "
    "product of their masses and inversely proportional to the square of the distance "
    "between them. The same force that makes an apple fall to the ground keeps the Moon in "
    "its orbit around the Earth. Two centuries later Einstein described gravity as the "
    "curvature of space and time by mass and energy, and his theory predicted gravitational "
    "waves, which detectors first observed in 2015."
)
"""A document far longer than the sample's others, its answer to "what is gravity?" in the
middle: with ``--long-documents chunk`` and a small ``--max-document-tokens`` the demo shows
which passage scored (the short documents fit in one window)."""


@dataclass(frozen=True)
class Corpus:
    """Documents, and what each is called in the results."""

    documents: list[str]
    labels: list[str]
    """Per document: its ``id`` field, else its line number (plain text) or record number
    (JSONL), counted from 1."""
    label_meaning: str
    """What the labels are, for the legend of the results: "the line number in notes.txt"."""


def sample_corpus() -> Corpus:
    """The built-in sample corpus (``SAMPLE_DOCUMENTS``, then ``LONG_SAMPLE_DOCUMENT``), its
    documents numbered from 1."""
    documents = [*SAMPLE_DOCUMENTS, LONG_SAMPLE_DOCUMENT]
    labels = [str(number) for number in range(1, len(documents) + 1)]
    return Corpus(documents, labels, "the number in the built-in sample corpus")


def load_corpus_file(path: str | Path) -> list[str]:
    """The documents of a corpus file (see ``read_corpus``)."""
    return read_corpus(path).documents


def read_corpus(path: str | Path) -> Corpus:
    """Documents from a file: JSONL with a "text" field per line (``.jsonl`` files, or any file
    whose first non-empty line is a JSON object), else one document per non-empty line.

    JSONL records with an "id" or "_id" field (a string or an integer) are known by it;
    otherwise each document is known by its record number (JSONL) or its line number (plain
    text). A record's "title", when it has one, goes before its text with a space between, as
    BEIR and MTEB join them for dense retrieval and ``qwen3-rag eval`` does: a BEIR
    ``corpus.jsonl`` (``{"_id", "title", "text"}``) reads as it is.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise CorpusError(f"corpus file '{file}' does not exist")
    if not file.is_file():
        raise CorpusError(f"corpus path '{file}' is not a file")
    try:
        raw = file.read_bytes()
    except OSError as exc:  # permissions, a file that vanished, an I/O error
        raise CorpusError(f"corpus file '{file}' cannot be read ({exc.strerror or exc})") from exc
    if b"\x00" in raw:
        raise CorpusError(f"corpus file '{file}' looks binary (it contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"corpus file '{file}' is not UTF-8 text ({exc.reason})") from exc
    # Only line feeds (and CR LF, CR) end a line, as in editors: str.splitlines() would also
    # split at form feeds and U+2028, and the line numbers shown would not match the file.
    physical = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [(number, line) for number, line in enumerate(physical, 1) if line.strip()]
    if not lines:
        raise CorpusError(f"corpus file '{file}' has no documents")
    if file.suffix == ".jsonl" or lines[0][1].lstrip().startswith("{"):
        return _read_jsonl(file, lines)
    return Corpus(
        [line.strip() for _, line in lines],
        [str(number) for number, _ in lines],
        f"the line number in {file.name}",
    )


_ID_FIELDS = ("id", "_id")
"""The fields that name a JSONL record: ours, and BEIR's."""


def _read_jsonl(file: Path, lines: list[tuple[int, str]]) -> Corpus:
    documents: list[str] = []
    ids: list[tuple[str, str] | None] = []  # (field, id)
    for number, line in lines:
        text, record_id = _jsonl_record(file, number, line)
        documents.append(text)
        ids.append(record_id)
    if all(record_id is None for record_id in ids):
        labels = [str(record) for record in range(1, len(documents) + 1)]
        return Corpus(documents, labels, f"the record number in {file.name}")
    fields = [field for field in _ID_FIELDS if any(r is not None and r[0] == field for r in ids)]
    named = " or ".join(f'"{field}"' for field in fields)
    # Mixing ids and record numbers would make "3" ambiguous; a repeated id names two records.
    first_line: dict[str, int] = {}
    for (number, _), record_id in zip(lines, ids, strict=True):
        if record_id is None:
            raise CorpusError(f"{file}:{number}: no {named}, while other records have one")
        field, value = record_id
        if value in first_line:
            raise CorpusError(
                f'{file}:{number}: "{field}" {value!r} was already used on line {first_line[value]}'
            )
        first_line[value] = number
    return Corpus(documents, list(first_line), f"the {named} field in {file.name}")


def _jsonl_record(file: Path, number: int, line: str) -> tuple[str, tuple[str, str] | None]:
    """A record's text (its title first, when it has one) and its id field and id (None
    without one)."""
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise CorpusError(f"{file}:{number}: not a JSON object ({exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise CorpusError(f'{file}:{number}: expected a JSON object with a "text" string')
    title = record.get("title", "")
    if not isinstance(title, str):
        raise CorpusError(f'{file}:{number}: "title" must be a string')
    given = [field for field in _ID_FIELDS if field in record]
    if len(given) > 1:
        raise CorpusError(f'{file}:{number}: both "id" and "_id": keep one')
    try:
        # JSON escapes can spell lone surrogates, which no tokenizer accepts.
        for field in ("text", "title", *given):
            if isinstance(record.get(field), str):
                check_text(f'{file}:{number}: "{field}"', record[field])
    except ValueError as exc:
        raise CorpusError(str(exc)) from exc
    text = document_text(title, record["text"])
    if not given:
        return text, None
    field = given[0]
    record_id = record[field]
    # bool is a subclass of int, but true/false are not ids.
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise CorpusError(f'{file}:{number}: "{field}" must be a string or an integer')
    if isinstance(record_id, str) and not record_id.strip():
        raise CorpusError(f'{file}:{number}: "{field}" is empty')
    return text, (field, str(record_id))
