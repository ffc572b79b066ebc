"""One error type for bad input, so every stage reports file, frame and line the same way."""

from __future__ import annotations


class InputError(ValueError):
    """Bad or unreadable input; the message names the file, and the frame and line if known.

    Formatted as ``FILE:LINE: frame F: message`` (parts omitted when unknown), the
    convention compilers use, so editors and users can jump straight to the spot.
    """

    def __init__(self, path, message, frame=None, line=None):
        self.path, self.frame, self.line, self.reason = str(path), frame, line, message
        where = self.path + (f":{line}" if line is not None else "")
        prefix = f"{where}: " + (f"frame {frame}: " if frame is not None else "")
        super().__init__(prefix + message)


class StoreBusy(RuntimeError):
    """Another process holds the writer lock of a store."""
