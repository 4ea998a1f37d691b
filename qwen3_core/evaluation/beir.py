"""Internal: BEIR-format datasets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``,
read and checked. Every problem is a ``DatasetError`` of one line that names the file and line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3_core.errors import DatasetError
from qwen3_core.evaluation.defaults import MAX_GRADE, MIN_GRADE
from qwen3_core.validation import check_text

CORPUS_FILE = "corpus.jsonl"
"""The corpus file's name in a dataset folder."""
QUERIES_FILE = "queries.jsonl"
"""The queries file's name in a dataset folder."""
QRELS_FOLDER = "qrels"
"""The folder of a dataset that holds one judgements file per split, ``<split>.tsv``."""


@dataclass(frozen=True)
class BeirDataset:
    """A checked BEIR-format dataset: the corpus, the queries judged in one split, and their
    relevance judgements (qrels)."""

    name: str
    """The dataset folder's name (the corpus file's folder when files were given)."""
    split: str
    """The split whose judgements were read (``test``, ``dev``, ...)."""
    document_ids: list[str]
    """Each document's ``_id``, in the corpus file's order."""
    documents: list[str]
    """Each document as it is embedded and reranked: its title and text (see
    ``document_text``)."""
    query_ids: list[str]
    """The ``_id`` of each query judged in the split, in the queries file's order."""
    queries: list[str]
    """The text of each judged query."""
    qrels: dict[str, dict[str, int]]
    """Query id -> document id -> graded relevance, as the file gives it (0 or below: judged
    not relevant)."""
    corpus_sha256: str
    """The SHA-256 of the corpus file's bytes: what cached corpus vectors are keyed by."""
    corpus_file: Path
    """The corpus file read."""
    queries_file: Path
    """The queries file read."""
    qrels_file: Path
    """The judgements file read."""
    unjudged_queries: int
    """Queries of the queries file with no judgement in this split (not evaluated)."""
    document_images: tuple[Path | None, ...] = ()
    """Per document: the image file its record names (``"image"``), or None; empty when no
    record names one."""

    @property
    def images(self) -> int:
        """How many documents are (or hold) an image."""
        return sum(image is not None for image in self.document_images)

    def document_inputs(self) -> list[str | Path | dict[str, object]]:
        """Each document as the engines take it: its text; or, for a record with an image,
        the image file (``Path``) when the record has no text, else ``{"image": file,
        "text": text}`` (the Qwen3-VL engines read the image, then the text)."""
        if not self.images:
            return list(self.documents)
        inputs: list[str | Path | dict[str, object]] = []
        for text, image in zip(self.documents, self.document_images, strict=True):
            if image is None:
                inputs.append(text)
            elif text:
                inputs.append({"image": image, "text": text})
            else:
                inputs.append(image)
        return inputs

    def document_keys(self) -> list[object]:
        """Per document, what makes two documents the same input (their text, and their
        image file): equal keys get equal vectors and scores."""
        if not self.images:
            return list(self.documents)
        return list(zip(self.documents, map(str, self.document_images), strict=True))


def document_text(title: str, text: str) -> str:
    """A document as the models see it: the title, a space, then the text (as BEIR and MTEB
    join them for dense retrieval); just the text when the title is empty.

    Args:
        title: The record's ``title`` ("" when it has none).
        text: The record's ``text``.

    Returns:
        The text to embed and rerank.
    """
    title = title.strip()
    return f"{title} {text}" if title else text


def load_beir(
    folder: str | os.PathLike[str] | None = None,
    split: str = "test",
    *,
    corpus_file: str | os.PathLike[str] | None = None,
    queries_file: str | os.PathLike[str] | None = None,
    qrels_file: str | os.PathLike[str] | None = None,
) -> BeirDataset:
    """Read and check a BEIR-format dataset.

    ``corpus.jsonl`` has one JSON object per line with ``_id``, ``text`` and an optional
    ``title``; a record may instead (or as well) name an image file, ``"image":
    "pages/3.png"``, relative to the corpus file's folder (ViDoRe-style sets: the Qwen3-VL
    models read it); ``queries.jsonl`` has ``_id`` and ``text``; ``qrels/<split>.tsv`` has
    ``query-id``, ``corpus-id`` and an integer ``score`` (from -1000 to 1000;
    0 or below: not relevant) per line, tab-separated, after an optional header line (a first
    line whose score is not a number and whose query id is no query's). Only the queries the
    split judges are evaluated. Ids are strings (integer ids are read as their decimal text).

    Args:
        folder: The dataset folder holding the three; may be None when all three files are
            given.
        split: The qrels file to read: ``qrels/{split}.tsv``.
        corpus_file: The corpus file, instead of the folder's ``corpus.jsonl``.
        queries_file: The queries file, instead of the folder's ``queries.jsonl``.
        qrels_file: The judgements file, instead of the folder's ``qrels/{split}.tsv``.

    Returns:
        The dataset, checked.

    Raises:
        DatasetError: A file is missing, empty, not UTF-8, malformed (with its line), has a
            repeated id, a grade out of range, or a judgement names a query or document the
            other files lack, or a record's image file does not exist.
    """
    root = _dataset_folder(folder, corpus_file, queries_file, qrels_file)
    if not split or not split.strip() or any(sep in split for sep in ("/", "\\")):
        raise DatasetError(f"the split must be a qrels file's name without '.tsv', got {split!r}")
    corpus_path = _checked_file(_path(corpus_file, root, CORPUS_FILE), "corpus")
    queries_path = _checked_file(_path(queries_file, root, QUERIES_FILE), "queries")
    qrels_path = _qrels_file(qrels_file, root, split)

    digest = hashlib.sha256()
    document_ids: list[str] = []
    documents: list[str] = []
    images: list[Path | None] = []
    first_line: dict[str, int] = {}
    for number, record in _jsonl_records(corpus_path, digest):
        doc_id = _record_id(corpus_path, number, record, first_line)
        image = _image_field(corpus_path, number, record)
        text = _string_field(corpus_path, number, record, "text", required=image is None)
        title = _string_field(corpus_path, number, record, "title", required=False)
        document_ids.append(doc_id)
        documents.append(document_text(title, text))
        images.append(image)
    if not documents:
        raise DatasetError(f"corpus file '{corpus_path}' has no documents")
    if any(image is not None for image in images):
        # The vectors kept for this corpus must change when an image file does.
        for image in images:
            if image is not None:
                digest.update(_image_digest(image))
    else:
        images = []

    all_queries: dict[str, str] = {}
    first_query_line: dict[str, int] = {}
    for number, record in _jsonl_records(queries_path, None):
        query_id = _record_id(queries_path, number, record, first_query_line)
        all_queries[query_id] = _string_field(queries_path, number, record, "text", required=True)
    if not all_queries:
        raise DatasetError(f"queries file '{queries_path}' has no queries")

    qrels = _read_qrels(qrels_path, all_queries, first_line, corpus_path, queries_path)
    query_ids = [query_id for query_id in all_queries if query_id in qrels]
    return BeirDataset(
        name=(root or corpus_path.parent).resolve().name,
        split=split,
        document_ids=document_ids,
        documents=documents,
        query_ids=query_ids,
        queries=[all_queries[query_id] for query_id in query_ids],
        qrels={query_id: qrels[query_id] for query_id in query_ids},
        corpus_sha256=digest.hexdigest(),
        corpus_file=corpus_path,
        queries_file=queries_path,
        qrels_file=qrels_path,
        unjudged_queries=len(all_queries) - len(query_ids),
        document_images=tuple(images),
    )


def _image_field(path: Path, number: int, record: dict[str, Any]) -> Path | None:
    """The image file a corpus record names (relative to the corpus file's folder), checked
    to be a file; None when the record names none."""
    value = record.get("image")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(
            f'{path}:{number}: "image" must be the path of an image file, relative to the '
            f"corpus file's folder"
        )
    _check_unicode(path, number, "image", value)
    image = path.parent / Path(value).expanduser()
    if not image.is_file():
        what = "is not a file" if image.exists() else "does not exist"
        raise DatasetError(f"{path}:{number}: the image file '{image}' {what}")
    return image


def _image_digest(image: Path) -> bytes:
    digest = hashlib.sha256()  # the record names the file: its bytes are what can change
    try:
        with image.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DatasetError(f"image file '{image}' cannot be read ({exc.strerror or exc})") from exc
    return digest.digest()


def _dataset_folder(
    folder: str | os.PathLike[str] | None, *files: str | os.PathLike[str] | None
) -> Path | None:
    if folder is None:
        if any(file is None for file in files):
            raise DatasetError(
                "give the dataset folder, or all three files: the corpus, the queries and the qrels"
            )
        return None
    root = Path(folder).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset folder '{root}' does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset path '{root}' is not a folder")
    return root


def _path(given: str | os.PathLike[str] | None, root: Path | None, name: str) -> Path:
    """The file given, else the one named ``name`` in the folder (there is one: checked)."""
    if given is not None:
        return Path(given).expanduser()
    assert root is not None
    return root / name


def _checked_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what} file '{path}' does not exist")
    if not path.is_file():
        raise DatasetError(f"{what} path '{path}' is not a file")
    return path


def _qrels_file(given: str | os.PathLike[str] | None, root: Path | None, split: str) -> Path:
    path = _path(given, root, f"{QRELS_FOLDER}/{split}.tsv")
    if given is None and root is not None and not path.exists():
        found = sorted(p.stem for p in (root / QRELS_FOLDER).glob("*.tsv"))
        splits = f"the splits there: {', '.join(found)}" if found else "no split there"
        raise DatasetError(f"no qrels for split '{split}': '{path}' does not exist ({splits})")
    return _checked_file(path, "qrels")


def _lines(path: Path, digest: Any | None) -> Iterator[tuple[int, str]]:
    """Each non-blank line of ``path`` with its 1-based number, read in binary so that a bad
    byte is reported with its line; ``digest`` (a hashlib object) is fed every byte."""
    try:
        with path.open("rb") as file:
            for number, raw in enumerate(file, 1):
                if digest is not None:
                    digest.update(raw)
                if b"\x00" in raw:
                    raise DatasetError(f"{path}:{number}: contains NUL bytes (a binary file?)")
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from exc
                if line.strip():
                    yield number, line
    except OSError as exc:  # permissions, a file that vanished, an I/O error
        raise DatasetError(f"'{path}' cannot be read ({exc.strerror or exc})") from exc


def _jsonl_records(path: Path, digest: Any | None) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path, digest):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: not a JSON object ({exc})") from exc
        except RecursionError:  # the parser recurses once per level of nesting
            raise DatasetError(
                f"{path}:{number}: nested too deeply to be a record (arrays or objects "
                f"{sys.getrecursionlimit()} or more levels deep)"
            ) from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object, got {line.strip():.40}")
        yield number, record


def _record_id(path: Path, number: int, record: dict[str, Any], seen: dict[str, int]) -> str:
    if "_id" not in record:
        raise DatasetError(f'{path}:{number}: no "_id"')
    value = record["_id"]
    # bool is a subclass of int, but true/false are not ids.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f'{path}:{number}: "_id" must be a string or an integer')
    record_id = str(value)
    if not record_id.strip():
        raise DatasetError(f'{path}:{number}: "_id" is empty')
    _check_unicode(path, number, "_id", record_id)
    if record_id in seen:
        raise DatasetError(
            f'{path}:{number}: "_id" {record_id!r} was already used on line {seen[record_id]}'
        )
    seen[record_id] = number
    return record_id


def _string_field(
    path: Path, number: int, record: dict[str, Any], name: str, *, required: bool
) -> str:
    value = record.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DatasetError(f'{path}:{number}: expected a "{name}" string')
    return _check_unicode(path, number, name, value)


def _check_unicode(path: Path, number: int, name: str, value: str) -> str:
    try:
        # JSON escapes can spell lone surrogates, which no tokenizer accepts.
        return check_text(f'{path}:{number}: "{name}"', value)
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc


# A grade as trec_eval and BEIR write them: ASCII digits, an optional sign (int() would also
# take "1_0" and other scripts' digits).
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _read_qrels(
    path: Path,
    queries: dict[str, str],
    documents: dict[str, int],
    corpus_path: Path,
    queries_path: Path,
) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    judged_on: dict[tuple[str, str], int] = {}
    first = True
    for number, line in _lines(path, None):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) == 1:  # space-separated, as some tools write them
            fields = line.split()
        fields = [field.strip() for field in fields]
        if len(fields) != 3:
            raise DatasetError(
                f"{path}:{number}: expected 3 tab-separated columns (query-id, corpus-id, "
                f"score), got {len(fields)}"
            )
        query_id, doc_id, score_text = fields
        if first:
            first = False
            # A header names its columns (query-id, corpus-id, score); a first judgement
            # whose grade is malformed is reported as one, not skipped.
            if query_id not in queries and not _is_number(score_text):
                continue
        score = _grade(path, number, score_text)
        if query_id not in queries:
            raise DatasetError(
                f"{path}:{number}: query {query_id!r} is not in '{queries_path.name}'"
            )
        if doc_id not in documents:
            raise DatasetError(
                f"{path}:{number}: document {doc_id!r} is not in '{corpus_path.name}'"
            )
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged and judged[doc_id] != score:
            raise DatasetError(
                f"{path}:{number}: query {query_id!r} and document {doc_id!r} were judged "
                f"{judged[doc_id]} on line {judged_on[query_id, doc_id]}, now {score}"
            )
        judged[doc_id] = score
        judged_on.setdefault((query_id, doc_id), number)
    if not qrels:
        raise DatasetError(f"qrels file '{path}' has no judgements")
    return qrels


def _grade(path: Path, number: int, text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise DatasetError(
            f"{path}:{number}: the score {text!r} is not an integer (graded relevance: 0 for "
            "not relevant, 1, 2, ... for more relevant)"
        )
    # Compared as text first: int() refuses numbers of more than 4300 digits.
    digits = text.lstrip("+-").lstrip("0")
    grade = int(text) if len(digits) <= 6 else None
    if grade is None or not MIN_GRADE <= grade <= MAX_GRADE:
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(digits)} digits)"
        raise DatasetError(
            f"{path}:{number}: the score {shown} is out of range: grades are integers from "
            f"{MIN_GRADE} to {MAX_GRADE} (0 or below: not relevant)"
        )
    return grade


def _is_number(text: str) -> bool:
    """Whether ``text`` is written as a number of any kind (1.0, 1e3, nan ...)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
