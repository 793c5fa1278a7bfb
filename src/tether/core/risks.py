"""OWASP Top 10 for Agentic Applications (2026): the canonical risk ids every verdict carries."""

from __future__ import annotations

from enum import StrEnum


class Risk(StrEnum):
    """A risk id; ``label`` gives its canonical name."""

    ASI01 = "ASI01"
    ASI02 = "ASI02"
    ASI03 = "ASI03"
    ASI04 = "ASI04"
    ASI05 = "ASI05"
    ASI06 = "ASI06"
    ASI07 = "ASI07"
    ASI08 = "ASI08"
    ASI09 = "ASI09"
    ASI10 = "ASI10"

    @property
    def label(self) -> str:
        return RISK_TITLES[self]


RISK_TITLES: dict[Risk, str] = {
    Risk.ASI01: "Agent Goal Hijack",
    Risk.ASI02: "Tool Misuse and Exploitation",
    Risk.ASI03: "Identity and Privilege Abuse",
    Risk.ASI04: "Agentic Supply Chain Vulnerabilities",
    Risk.ASI05: "Unexpected Code Execution (RCE)",
    Risk.ASI06: "Memory & Context Poisoning",
    Risk.ASI07: "Insecure Inter-Agent Communication",
    Risk.ASI08: "Cascading Failures",
    Risk.ASI09: "Human-Agent Trust Exploitation",
    Risk.ASI10: "Rogue Agents",
}
