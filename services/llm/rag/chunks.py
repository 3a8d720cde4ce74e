"""Knowledge base files into passages: markdown by heading, text by paragraph, YAML by entry.

A knowledge base is a directory of ``*.md``, ``*.txt`` and ``*.yaml``/``*.yml`` files
(subdirectories included). Every passage keeps where it came from as
``"<file>#<section>"``, which is what a citation shows and what the model is told.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Longest passage, in characters; longer sections are split at paragraphs, then sentences.
MAX_CHARS = 700
#: File suffixes that make up a knowledge base.
SUFFIXES = (".md", ".txt", ".yaml", ".yml")
#: Bumped when chunking changes, so cached indexes of unchanged files are rebuilt.
CHUNKER_VERSION = "1"

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_BLANK_LINES = re.compile(r"\n\s*\n")


class KnowledgeError(ValueError):
    """A knowledge base is missing or one of its files is unreadable; the message names it."""


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of a knowledge base.

    Attributes:
        source: File and section, e.g. ``"hours-and-location.md#Service department"``.
        text: The passage as given to the model.
        headings: Heading path of the section (markdown), the question (YAML) or title (text).
    """

    source: str
    text: str
    headings: tuple[str, ...] = ()

    @property
    def embedding_text(self) -> str:
        """What is embedded: the heading path, then the text (headings carry the topic)."""
        if not self.headings or self.text.startswith(self.headings[-1]):
            return self.text
        return " > ".join(self.headings) + "\n" + self.text


def knowledge_files(directory: Path) -> list[Path]:
    """The knowledge base's files, sorted by path relative to ``directory``."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def load_passages(directory: Path) -> list[Passage]:
    """Every passage of the knowledge base in ``directory``, file by file.

    Raises:
        KnowledgeError: the directory has no passages, or a file cannot be read or parsed
            (the message names the file, and the line when the parser gives one).
    """
    passages: list[Passage] = []
    for path in knowledge_files(directory):
        passages.extend(parse_file(path, path.relative_to(directory).as_posix()))
    if not passages:
        raise KnowledgeError(f"knowledge base {directory} has no passages "
                             f"(expected {', '.join('*' + s for s in SUFFIXES)} files)")
    return passages


def parse_file(path: Path, name: str) -> list[Passage]:
    """The passages of one file; ``name`` is how sources refer to it."""
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{path}: cannot read: {exc}") from exc
    if path.suffix == ".md":
        return markdown_passages(content, name)
    if path.suffix == ".txt":
        return text_passages(content, name)
    return yaml_passages(content, name, path)


# -- markdown --------------------------------------------------------------------------------


def markdown_passages(content: str, name: str) -> list[Passage]:
    """Split markdown at headings; each section's chunks keep the heading path."""
    passages: list[Passage] = []
    path: list[str] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(body).strip()
        body.clear()
        if text:
            heading = path[-1] if path else ""
            source = f"{name}#{heading}" if heading else name
            passages.extend(Passage(source, chunk, tuple(path)) for chunk in split_text(text))

    for line in content.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level = len(match.group(1))
        del path[level - 1:]
        path.extend([""] * (level - 1 - len(path)))  # a skipped level (# then ###)
        path.append(match.group(2))
    flush()
    return [Passage(p.source, p.text, tuple(h for h in p.headings if h)) for p in passages]


# -- plain text ------------------------------------------------------------------------------


def text_passages(content: str, name: str) -> list[Passage]:
    """One passage per paragraph; a short first line without end punctuation is its title."""
    passages: list[Passage] = []
    for number, paragraph in enumerate(_paragraphs(content), start=1):
        first, _, rest = paragraph.partition("\n")
        title = first.strip().rstrip(":")
        headings: tuple[str, ...] = ()
        if rest.strip() and len(title) <= 60 and not first.rstrip().endswith((".", "!", "?")):
            section, headings = title, (title,)
        else:
            section = f"paragraph {number}"
        passages.extend(Passage(f"{name}#{section}", chunk, headings)
                        for chunk in split_text(paragraph))
    return passages


# -- YAML ------------------------------------------------------------------------------------


def yaml_passages(content: str, name: str, path: Path) -> list[Passage]:
    """A list of ``{question, answer}`` entries, or a mapping of topic to text: one passage each.

    Raises:
        KnowledgeError: invalid YAML (with its line) or entries of the wrong shape.
    """
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise KnowledgeError(f"{path}{where}: invalid YAML: {problem}") from exc
    if data is None:
        return []
    if isinstance(data, list):
        return [_qa_passage(entry, number, name, path) for number, entry in enumerate(data)]
    if isinstance(data, dict):
        return [_topic_passage(str(key), value, name) for key, value in data.items()]
    raise KnowledgeError(f"{path}: expected a list of question/answer entries or a mapping, "
                         f"got {type(data).__name__}")


def _qa_passage(entry: Any, number: int, name: str, path: Path) -> Passage:
    if not isinstance(entry, dict) or not {"question", "answer"} <= entry.keys():
        raise KnowledgeError(f"{path}: entry {number}: expected a mapping with 'question' "
                             f"and 'answer'")
    question, answer = str(entry["question"]).strip(), str(entry["answer"]).strip()
    if not question or not answer:
        raise KnowledgeError(f"{path}: entry {number}: empty question or answer")
    return Passage(f"{name}#{question}", f"{question}\n{answer}", (question,))


def _topic_passage(key: str, value: Any, name: str) -> Passage:
    if isinstance(value, str | int | float | bool):
        text = str(value).strip()
    else:
        text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).strip()
    return Passage(f"{name}#{key}", f"{key}: {text}", (key,))


# -- splitting -------------------------------------------------------------------------------


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK_LINES.split(text) if p.strip()]


def split_text(text: str, limit: int = MAX_CHARS) -> list[str]:
    """``text`` in chunks of at most ``limit`` characters, cut at paragraphs when possible.

    Paragraphs are packed greedily; one longer than ``limit`` is cut at lines, then
    sentences, then words.
    """
    if len(text) <= limit:
        return [text]
    units: list[str] = []
    for paragraph in _paragraphs(text):
        units.extend(_cut(paragraph, limit))
    return _pack(units, limit, "\n\n")


def _cut(text: str, limit: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    for pattern, joiner in ((re.compile(r"\n"), "\n"), (_SENTENCE_END, " ")):
        parts = [p.strip() for p in pattern.split(text) if p.strip()]
        if len(parts) > 1:
            pieces = [piece for part in parts for piece in _cut(part, limit)]
            return _pack(pieces, limit, joiner)
    return _pack(text.split(), limit, " ")


def _pack(units: list[str], limit: int, joiner: str) -> list[str]:
    chunks: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) <= limit or not current:
            current = candidate
        else:
            chunks.append(current)
            current = unit
    if current:
        chunks.append(current)
    return chunks
