"""Prompt catalogue (loading, checks, each partner's text per pattern), the wording
rules of STYLE.md, and the PromptGate pace rules of DESIGN.md."""

import os
import re
import tomllib
from pathlib import Path

import pytest

from monitor.prompts import (
    DEFAULT_CATALOGUE,
    REQUIRED_TEXTS,
    CatalogueError,
    PromptCatalogue,
    PromptConfig,
    PromptGate,
    PromptTexts,
)

NAMES = {"a": "Alma", "b": "Bruno"}


@pytest.fixture(scope="module")
def raw() -> dict:
    """The bundled file read directly (whitespace normalised as the loader does)."""
    data = tomllib.loads(DEFAULT_CATALOGUE.read_text(encoding="utf-8"))
    return {p: {k: " ".join(v.split()) for k, v in data[p].items()} for p in REQUIRED_TEXTS}


@pytest.fixture(scope="module")
def cat() -> PromptCatalogue:
    return PromptCatalogue.load()


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "my_prompts.toml"
    path.write_text(body, encoding="utf-8")
    return path


VALID = """
[divergence]
title = "T1"
rising = "R {other}"
other = "O {other}"
[escalation]
title = "T2"
both = "B"
[flooding]
title = "T3"
flooded = "F {other}"
other = "{other} rests"
"""


# --- loading -------------------------------------------------------------------------


def test_bundled_catalogue_loads_with_every_text(cat, raw):
    assert cat.path == str(DEFAULT_CATALOGUE)
    for pattern, keys in REQUIRED_TEXTS.items():
        assert set(cat.texts[pattern]) == set(keys)
        for key in keys:
            assert cat.texts[pattern][key] == raw[pattern][key]
            assert "\n" not in cat.texts[pattern][key] and "  " not in cat.texts[pattern][key]


def test_loads_a_file_given_by_path(tmp_path):
    path = write(tmp_path, VALID)
    cat = PromptCatalogue.load(path)
    assert cat.path == str(path)
    assert cat.for_pattern("flooding", "b", NAMES) == PromptTexts("T3", "Bruno rests", "F Alma")
    assert cat.for_pattern("divergence", "a", NAMES) == PromptTexts("T1", "R Bruno", "O Alma")
    assert cat.for_pattern("escalation", None, NAMES) == PromptTexts("T2", "B", "B")


def test_an_edited_file_is_read_again(tmp_path):
    path = write(tmp_path, VALID)
    first = PromptCatalogue.load(path)
    assert PromptCatalogue.load(path) is first  # unchanged: not parsed again
    path.write_text(VALID.replace('"R {other}"', '"Rising, {other}"'), encoding="utf-8")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))  # even within one clock tick
    assert PromptCatalogue.load(path).for_pattern("divergence", "a", NAMES).text_a == "Rising, Bruno"
    path.write_text("[divergence\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="cannot read"):
        PromptCatalogue.load(path)  # a broken edit is refused, not hidden by the earlier load


@pytest.mark.parametrize(
    ("pattern", "key"),
    [(p, k) for p, keys in REQUIRED_TEXTS.items() for k in keys],
)
def test_missing_text_names_file_and_key(tmp_path, pattern, key):
    lines = VALID.splitlines()
    section = None
    kept = []
    for line in lines:
        if line.startswith("["):
            section = line.strip("[]")
        if section == pattern and line.startswith(f"{key} ="):
            continue
        kept.append(line)
    path = write(tmp_path, "\n".join(kept))
    with pytest.raises(CatalogueError) as err:
        PromptCatalogue.load(path)
    assert str(path) in str(err.value)
    assert f"[{pattern}]" in str(err.value) and f"'{key}'" in str(err.value)


def test_blank_text_and_missing_section_are_refused(tmp_path):
    path = write(tmp_path, VALID.replace('both = "B"', 'both = "   "'))
    with pytest.raises(CatalogueError, match=r"\[escalation\].*'both'"):
        PromptCatalogue.load(path)
    path = write(tmp_path, VALID.split("[flooding]")[0])
    with pytest.raises(CatalogueError) as err:
        PromptCatalogue.load(path)
    assert str(path) in str(err.value) and "[flooding]" in str(err.value)
    path = write(tmp_path, VALID.replace('both = "B"', "both = 3"))
    with pytest.raises(CatalogueError, match="'both'"):
        PromptCatalogue.load(path)


def test_bad_toml_and_missing_file_raise_catalogue_error(tmp_path):
    path = write(tmp_path, VALID + "\nthis is = = not toml\n")
    with pytest.raises(CatalogueError) as err:
        PromptCatalogue.load(path)
    assert str(path) in str(err.value)
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(CatalogueError, match="nowhere.toml"):
        PromptCatalogue.load(missing)


@pytest.mark.parametrize("bad", ["R {partner}", "R {", "R {0}", "R }"])
def test_placeholder_typos_fail_at_load_not_at_prompt_time(tmp_path, bad):
    path = write(tmp_path, VALID.replace('"R {other}"', repr(bad).replace("'", '"')))
    with pytest.raises(CatalogueError) as err:
        PromptCatalogue.load(path)
    assert str(path) in str(err.value) and "[divergence] rising" in str(err.value)


def test_doubled_braces_are_literal(tmp_path):
    path = write(tmp_path, VALID.replace('both = "B"', 'both = "B {{calm}}"'))
    assert PromptCatalogue.load(path).for_pattern("escalation", None).text_a == "B {calm}"


# --- each partner's text -------------------------------------------------------------


def test_divergence_rising_a(cat, raw):
    texts = cat.for_pattern("divergence", "a", NAMES)
    assert texts.title == raw["divergence"]["title"]
    assert texts.text_a == raw["divergence"]["rising"].format(other="Bruno")
    assert texts.text_b == raw["divergence"]["other"].format(other="Alma")
    assert "Alma" in texts.text_b and "Bruno" not in texts.text_b


def test_divergence_rising_b(cat, raw):
    texts = cat.for_pattern("divergence", "b", NAMES)
    assert texts.text_b == raw["divergence"]["rising"].format(other="Alma")
    assert texts.text_a == raw["divergence"]["other"].format(other="Bruno")
    assert "Bruno" in texts.text_a and "Alma" not in texts.text_a


@pytest.mark.parametrize(("partner", "lead", "rest"), [("a", "text_a", "text_b"), ("b", "text_b", "text_a")])
def test_flooding_each_side(cat, raw, partner, lead, rest):
    texts = cat.for_pattern("flooding", partner, NAMES)
    flooded_name = NAMES[partner]
    calm_name = NAMES["b" if partner == "a" else "a"]
    assert texts.title == raw["flooding"]["title"]
    assert getattr(texts, lead) == raw["flooding"]["flooded"].format(other=calm_name)
    assert getattr(texts, rest) == raw["flooding"]["other"].format(other=flooded_name)
    assert flooded_name in getattr(texts, rest)


@pytest.mark.parametrize("partner", [None, "a", "b"])
def test_escalation_same_text_to_both(cat, raw, partner):
    texts = cat.for_pattern("escalation", partner, NAMES)
    assert texts == PromptTexts(raw["escalation"]["title"], raw["escalation"]["both"], raw["escalation"]["both"])


def test_without_names_the_partner_is_called_your_partner(cat, raw):
    texts = cat.for_pattern("divergence", "a")
    assert texts.text_b == raw["divergence"]["other"].format(other="your partner")
    texts = cat.for_pattern("flooding", "b", {"a": "", "b": "Bruno"})
    assert texts.text_b == cap(raw["flooding"]["flooded"].format(other="your partner"))
    assert texts.text_a == raw["flooding"]["other"].format(other="Bruno")
    # a text that opens with the default name still opens with a capital letter
    opening = cat.for_pattern("flooding", "a").text_b
    assert opening == cap(raw["flooding"]["other"].format(other="your partner"))
    assert opening[0].isupper()


def test_unknown_partner_or_pattern_is_an_error(cat):
    with pytest.raises(ValueError, match="partner"):
        cat.for_pattern("divergence", None, NAMES)
    with pytest.raises(ValueError, match="partner"):
        cat.for_pattern("flooding", "c", NAMES)
    with pytest.raises(KeyError, match="sulking"):
        cat.for_pattern("sulking", "a", NAMES)


# --- wording -------------------------------------------------------------------------

BLAMING_OR_DIAGNOSING = [
    "fault", "blame", "too much", "always", "never", "disorder", "anxiety", "anxious",
    "wrong", "should have", "overreact", "calm down", "your problem", "panic",
    "attack", "trauma", "abnormal", "crazy", "hysteric",
]


def all_texts(cat: PromptCatalogue):
    for pattern, keys in REQUIRED_TEXTS.items():
        for key in keys:
            yield pattern, key, cat.texts[pattern][key]


def test_no_blaming_or_diagnosing_words(cat):
    found = [
        (pattern, key, word)
        for pattern, key, text in all_texts(cat)
        for word in BLAMING_OR_DIAGNOSING
        if re.search(rf"\b{word}\b", text, flags=re.IGNORECASE)
    ]
    assert found == []


def test_texts_are_short(cat):
    lengths = {(p, k): len(text.split()) for p, k, text in all_texts(cat)}
    assert max(lengths.values()) < 60, lengths
    titles = [cat.texts[p]["title"] for p in REQUIRED_TEXTS]
    assert all(len(t.split()) <= 8 for t in titles)


def test_word_check_can_fail():
    text = "It is never your fault"
    hits = [w for w in BLAMING_OR_DIAGNOSING if re.search(rf"\b{w}\b", text, flags=re.IGNORECASE)]
    assert hits == ["fault", "never"]


# --- PromptGate --------------------------------------------------------------------


def gate_after(*shown: float, cfg: PromptConfig = PromptConfig()) -> PromptGate:
    gate = PromptGate(cfg)
    for t in shown:
        gate.record(t)
    return gate


def test_first_prompt_always_allowed():
    assert PromptGate().allows(0.0)
    assert PromptGate().allows(5000.0, ignore_cooldown=True)


def test_cooldown_of_120_s():
    gate = gate_after(100.0)
    assert not gate.allows(100.0)
    assert not gate.allows(219.0)
    assert not gate.allows(219.999)
    assert gate.allows(220.0)
    assert gate.allows(400.0)


def test_at_most_three_in_any_600_s():
    gate = gate_after(0.0, 120.0, 240.0)
    assert not gate.allows(360.0)  # cool-down is over, but 3 in the last 600 s
    assert not gate.allows(599.0)
    assert gate.allows(600.0)  # the prompt at 0 has left the window
    gate.record(600.0)
    # cool-down aside, 120, 240 and 600 fill the window until 120 drops out at 720
    assert not gate.allows(719.0, ignore_cooldown=True)
    assert gate.allows(720.0, ignore_cooldown=True)
    assert gate.allows(720.0)


def test_ignore_cooldown_still_bound_by_rate_limit():
    gate = gate_after(0.0)
    assert not gate.allows(30.0)
    assert gate.allows(30.0, ignore_cooldown=True)
    gate.record(30.0)
    gate.record(60.0)
    assert not gate.allows(90.0, ignore_cooldown=True)  # 3 in the window
    assert not gate.allows(599.0, ignore_cooldown=True)
    assert gate.allows(600.0, ignore_cooldown=True)  # the prompt at 0 has dropped out
    gate.record(600.0)
    assert not gate.allows(630.0)  # an ordinary prompt waits out the cool-down ...
    assert not gate.allows(629.0, ignore_cooldown=True)  # 30, 60, 600 in the window
    assert gate.allows(630.0, ignore_cooldown=True)  # ... the flooding break does not


def test_custom_pace():
    cfg = PromptConfig(cooldown_s=10.0, max_per_window=2, window_s=100.0)
    gate = gate_after(0.0, 10.0, cfg=cfg)
    assert not gate.allows(20.0)
    assert not gate.allows(99.0)
    assert gate.allows(100.0)
    assert not gate_after(0.0, cfg=cfg).allows(9.9)


def test_defaults_match_design():
    cfg = PromptConfig()
    assert (cfg.cooldown_s, cfg.max_per_window, cfg.window_s) == (120.0, 3, 600.0)
