"""The pause-and-notice prompts: their catalogue, and when one may be shown.

The wording lives in prompts.toml (editable by anyone); this module loads and checks it,
picks each partner's text for a pattern, and keeps the pace rules of DESIGN.md: a
cool-down after each prompt and at most a few prompts in any ten minutes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CATALOGUE = Path(__file__).with_name("prompts.toml")

# Which texts each pattern needs: divergence and flooding speak to each side,
# escalation speaks to both partners at once.
REQUIRED_TEXTS = {
    "divergence": ("title", "rising", "other"),
    "escalation": ("title", "both"),
    "flooding": ("title", "flooded", "other"),
}


class CatalogueError(ValueError):
    """The prompt catalogue file is missing a text or cannot be read."""


@dataclass(frozen=True)
class PromptConfig:
    """How often prompts may come.

    cooldown_s: after a prompt, no other prompt for this many seconds.
    max_per_window: at most this many prompts in any window of window_s seconds.
    """

    cooldown_s: float = 120.0
    max_per_window: int = 3
    window_s: float = 600.0


@dataclass(frozen=True)
class PromptTexts:
    """The title and each partner's text for one prompt."""

    title: str
    text_a: str
    text_b: str


@dataclass(frozen=True)
class PromptCatalogue:
    """Prompt wording per pattern, as loaded from a TOML file."""

    texts: dict[str, dict[str, str]]
    path: str = ""

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PromptCatalogue":
        """Load and check a catalogue (the bundled prompts.toml by default).

        A file already loaded and unchanged since (same size and modification time)
        is not parsed again: ``coreg analyze`` over many recordings loads it per file,
        and parsing costs more than a short analysis. An edited file is read afresh.
        """
        source = Path(path) if path is not None else DEFAULT_CATALOGUE
        try:
            st = source.stat()
        except OSError as exc:
            raise CatalogueError(f"{source}: cannot read the prompt catalogue: {exc}") from exc
        key = (str(source), st.st_mtime_ns, st.st_size)
        held = _LOADED.get(key)
        if held is not None:
            return held
        catalogue = cls._parse(source)
        if len(_LOADED) >= 8:
            _LOADED.clear()  # old versions of edited files: a handful at most
        _LOADED[key] = catalogue
        return catalogue

    @classmethod
    def _parse(cls, source: Path) -> "PromptCatalogue":
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CatalogueError(f"{source}: cannot read the prompt catalogue: {exc}") from exc
        for pattern, keys in REQUIRED_TEXTS.items():
            section = data.get(pattern)
            if not isinstance(section, dict):
                raise CatalogueError(f"{source}: no [{pattern}] section")
            for key in keys:
                if not isinstance(section.get(key), str) or not section[key].strip():
                    raise CatalogueError(f"{source}: [{pattern}] needs a non-empty '{key}' text")
                # Fill the placeholder now, so that a typo such as {partner} or a lone
                # brace fails at start rather than when the prompt is due.
                try:
                    section[key].format(other="")
                except (KeyError, IndexError, ValueError) as exc:
                    raise CatalogueError(
                        f"{source}: [{pattern}] {key}: only {{other}} may appear in braces "
                        f"(write {{{{ and }}}} for a literal brace): {exc!r}"
                    ) from exc
        texts = {p: {k: " ".join(data[p][k].split()) for k in keys} for p, keys in REQUIRED_TEXTS.items()}
        return cls(texts=texts, path=str(source))


    def for_pattern(
        self, pattern: str, partner: str | None, names: dict[str, str] | None = None
    ) -> PromptTexts:
        """Each partner's text for ``pattern``; ``partner`` is the rising or flooded one.

        ``partner`` is "a" or "b" (ignored for escalation, which has one text for both).
        In every text ``{other}`` becomes the reader's partner's name from ``names``, or
        "your partner" (capitalised when it opens the text).
        """
        if pattern not in self.texts:
            raise KeyError(f"no prompt texts for pattern {pattern!r}; known: {', '.join(self.texts)}")
        names = names or {}
        # Each text names the *other* person: A reads B's name and vice versa.
        for_a = {"other": names.get("b") or "your partner"}
        for_b = {"other": names.get("a") or "your partner"}
        section = self.texts[pattern]
        if pattern == "escalation":
            both = section["both"]
            return PromptTexts(section["title"], _fill(both, for_a), _fill(both, for_b))
        if partner not in ("a", "b"):
            raise ValueError(f"a {pattern} prompt needs partner 'a' or 'b', got {partner!r}")
        lead_key = "rising" if pattern == "divergence" else "flooded"
        lead, other = section[lead_key], section["other"]
        if partner == "a":
            return PromptTexts(section["title"], _fill(lead, for_a), _fill(other, for_b))
        return PromptTexts(section["title"], _fill(other, for_a), _fill(lead, for_b))


_LOADED: dict[tuple[str, int, int], "PromptCatalogue"] = {}  # see PromptCatalogue.load


def _fill(text: str, values: dict[str, str]) -> str:
    # "{other}'s body ..." with the default name must still start with a capital.
    filled = text.format(**values)
    return filled[:1].upper() + filled[1:]


@dataclass
class PromptGate:
    """Decides whether a prompt may be shown now: cool-down and rate limit.

    Times are seconds of session time. Plain state, updated only through ``record``.
    """

    config: PromptConfig = field(default_factory=PromptConfig)
    shown_t_s: list[float] = field(default_factory=list)

    def allows(self, t_s: float, *, ignore_cooldown: bool = False) -> bool:
        """True when a prompt at ``t_s`` respects the cool-down and the rate limit.

        ``ignore_cooldown`` is for the flooding break, which should not wait out a
        cool-down; it still counts towards, and is bound by, the rate limit.
        """
        cooling = self.shown_t_s and t_s - self.shown_t_s[-1] < self.config.cooldown_s
        if cooling and not ignore_cooldown:
            return False
        recent = [s for s in self.shown_t_s if t_s - s < self.config.window_s]
        return len(recent) < self.config.max_per_window

    def record(self, t_s: float) -> None:
        """Note that a prompt was shown at ``t_s``."""
        self.shown_t_s.append(t_s)
