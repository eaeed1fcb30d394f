"""File checkers: every acknowledged write is present byte for byte at the end, and
no read ever returned a mix of two versions of a file.

A file's versions are recorded in the order its one writer attempted them, each
marked acknowledged (fsync and close returned) or not. Every version is written
whole at offset 0 with the same length, so a read is either one version or a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FileVersions:
    """What one writer attempted on one path, oldest first."""

    attempts: list[tuple[bytes, bool]] = field(default_factory=list)  # (content, acked)

    def attempt(self, content: bytes) -> int:
        self.attempts.append((content, False))
        return len(self.attempts) - 1

    def acknowledge(self, index: int) -> None:
        self.attempts[index] = (self.attempts[index][0], True)

    @property
    def acked(self) -> bool:
        return any(acked for _, acked in self.attempts)

    def allowed_final(self) -> set[bytes]:
        """The last acknowledged version, or any attempted after it (an unanswered
        write may have taken effect). Before any acknowledgement anything attempted,
        an empty file or none is possible, which the caller does not check."""
        last_acked = max(i for i, (_, acked) in enumerate(self.attempts) if acked)
        return {content for content, _ in self.attempts[last_acked:]}

    def readable(self) -> set[bytes]:
        """What a read may return: a version attempted, or the empty file the first
        write created before its data was committed."""
        return {b"", *(content for content, _ in self.attempts)}


def lost_acknowledged(files: dict[str, FileVersions], final: dict[str, bytes | None]) -> list[str]:
    """Paths whose acknowledged content is not what the cluster holds at the end
    (`final[path]` is None when the file is missing)."""
    lost = []
    for path, versions in sorted(files.items()):
        if not versions.acked:
            continue
        found = final.get(path)
        if found is None or found not in versions.allowed_final():
            what = "missing" if found is None else f"{len(found)} bytes of no acknowledged version"
            lost.append(f"{path}: {what}")
    return lost


def mixed_reads(files: dict[str, FileVersions], reads: list[tuple[str, bytes]]) -> list[str]:
    """Reads that returned something no single version of the file holds."""
    bad = []
    for path, content in reads:
        versions = files.get(path)
        if versions is None or content not in versions.readable():
            bad.append(f"{path}: read {len(content)} bytes matching no single version")
    return bad
