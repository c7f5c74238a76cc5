"""What an attachment record says about a `tool_result` or `image` content block."""

from __future__ import annotations

from typing import Any

PREVIEW_CHARS = 256


def size_and_preview(block: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """Byte size, text preview and media type of a tool_result or image block."""
    if block.get("type") == "image":
        return _image_size(block), None, _media_type(block)
    content = block.get("content")
    if isinstance(content, str):
        return len(content.encode("utf-8", "replace")), content[:PREVIEW_CHARS], None
    size = 0
    preview: str | None = None
    media: str | None = None
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                size += len(part["text"].encode("utf-8", "replace"))
                if preview is None:
                    preview = part["text"][:PREVIEW_CHARS]
            elif part.get("type") == "image":
                size += _image_size(part)
                media = media or _media_type(part)
    return size, preview, media


def _image_size(block: dict[str, Any]) -> int:
    source = block.get("source")
    data = source.get("data") if isinstance(source, dict) else None
    if not isinstance(data, str):
        return 0
    return len(data) * 3 // 4 - data[-2:].count("=")  # decoded base64 size, without decoding


def _media_type(block: dict[str, Any]) -> str | None:
    source = block.get("source")
    media = source.get("media_type") if isinstance(source, dict) else None
    return media if isinstance(media, str) else None
