"""The retrieved passages as text for the system prompt, with how to use and cite them.

The reply is spoken, so the model is asked to name its source in plain words
("according to our service hours page"), never a file name or a bracketed number.
Kept short: every prompt token is paid for in first-token latency.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from services.llm.rag.knowledge import SearchResult


def spoken_source(source: str) -> str:
    """A source as words: ``"hours-and-location.md#Service department"`` ->
    ``"hours and location, Service department"``."""
    file, _, section = source.partition("#")
    title = PurePosixPath(file).stem.replace("-", " ").replace("_", " ").strip()
    if not section or section.startswith("paragraph "):
        return title
    return f"{title}, {section}"


def cited_passages_block(result: SearchResult) -> str:
    """Text to append to the system prompt for the turn ``result`` was retrieved for.

    With passages: each numbered ``[n]`` with its source, then the instructions. With
    none: a line telling the model to say it does not know rather than guess.
    """
    if not result.passages:
        return ("Reference: nothing in the knowledge base matches this question. If it "
                "asks for facts you were not given, say you do not know.")
    lines = ["Reference passages, best match first:"]
    for number, passage in enumerate(result.passages, start=1):
        text = " ".join(passage.text.split())
        lines.append(f"[{number}] ({spoken_source(passage.source)}) {text}")
    example = spoken_source(result.passages[0].source.partition("#")[0])
    lines.append(
        "Answer from these passages when they are relevant, and say which one you used "
        f"in plain spoken words, for example \"according to our {example} page\"; "
        "never read out numbers in brackets or file names. If they do not cover the "
        "question, say you do not know."
    )
    return "\n".join(lines)
