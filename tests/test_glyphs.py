"""Tests for bioplastic.data.glyphs: the few-shot dataset rendered from matplotlib's fonts."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
import torch

from bioplastic.data import glyphs
from bioplastic.data.episodes import EpisodeSampler
from bioplastic.data.glyphs import glyph_classes, glyph_fonts, load_glyphs, script_of

SMALL = {"max_classes": 30, "instances_per_class": 4}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    # Never write to the user's cache, even through the default location.
    monkeypatch.setenv("BIOPLASTIC_CACHE", str(tmp_path / "cache"))


def _cache_files(tmp_path):
    return sorted((tmp_path / "cache" / "glyphs").glob("glyphs-*.npz"))


def test_images_are_28x28_in_unit_range_and_not_blank():
    data = load_glyphs("all", **SMALL)
    assert len(data) == 30 * 4 and len(data.classes) == 30
    image, label = data[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int)
    x, y = data.tensors()
    assert x.shape == (120, 1, 28, 28)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert (x.flatten(1).amax(1) > 0.3).all()  # every instance shows its glyph
    border = torch.cat([x[:, 0, [0, -1], :], x[:, 0, :, [0, -1]].transpose(1, 2)], 1)
    assert (border.flatten(1).amax(1) > 0.5).float().mean() < 0.05  # centred, rarely clipped
    assert torch.equal(torch.bincount(y), torch.full((30,), 4))
    assert len(data.class_scripts) == len(data.class_names) == 30
    assert data.class_names[0] == unicodedata.name(data.classes[0])


def test_instances_differ_within_a_class():
    x, y = load_glyphs("all", **SMALL).tensors()
    first = x[y == 0]
    assert not torch.equal(first[0], first[1])


def test_same_seed_same_images_other_seed_other_images(tmp_path):
    a = load_glyphs("all", seed=0, cache_dir=tmp_path / "a", **SMALL)
    b = load_glyphs("all", seed=0, cache_dir=tmp_path / "b", **SMALL)  # rendered again
    c = load_glyphs("all", seed=1, cache_dir=tmp_path / "a", **SMALL)
    assert torch.equal(a.data, b.data) and a.instance_fonts == b.instance_fonts
    assert a.class_codepoints == c.class_codepoints  # the seed changes instances, not classes
    assert not torch.equal(a.data, c.data)


def test_a_class_looks_the_same_whatever_else_is_loaded():
    small = load_glyphs("all", max_classes=20, instances_per_class=3)
    large = load_glyphs("all", max_classes=25, instances_per_class=3)
    assert set(small.class_codepoints) < set(large.class_codepoints)
    for label, codepoint in enumerate(small.class_codepoints):
        other = large.class_codepoints.index(codepoint)
        assert torch.equal(small.data[small.targets == label], large.data[large.targets == other])


@pytest.mark.parametrize("split_by", ["class", "script"])
def test_meta_splits_are_disjoint_and_cover_everything(split_by):
    parts = {s: load_glyphs(s, split_by=split_by, **SMALL) for s in ("train", "val", "test")}
    whole = load_glyphs("all", split_by=split_by, **SMALL)
    sets = {s: set(d.class_codepoints) for s, d in parts.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"])
    assert not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == set(whole.class_codepoints)
    assert sum(len(d) for d in parts.values()) == len(whole)
    for data in parts.values():  # labels are dense within each split
        assert torch.equal(torch.unique(data.targets), torch.arange(len(data.classes)))
    if split_by == "script":
        scripts = {s: set(d.class_scripts) for s, d in parts.items()}
        assert not (scripts["train"] & scripts["val"] or scripts["train"] & scripts["test"])
        assert not scripts["val"] & scripts["test"]


def test_full_catalogue_splits_match_their_shares_and_keep_scripts_whole():
    classes = glyph_classes()
    assert len(classes) > 1000  # Omniglot-sized
    for attribute in ("split", "script_split"):
        counts = {s: sum(getattr(c, attribute) == s for c in classes) for s in glyphs._SPLITS}
        for split, fraction in glyphs.SPLIT_FRACTIONS.items():
            assert abs(counts[split] / len(classes) - fraction) < 0.05, (attribute, counts)
    split_of_script = {}
    for c in classes:
        assert split_of_script.setdefault(c.script, c.script_split) == c.script_split
    assert len(set(split_of_script.values())) == 3


def test_catalogue_folds_accents_and_homoglyphs_by_default():
    classes = {c.codepoint: c for c in glyph_classes()}
    assert not any(
        unicodedata.combining(ch) for cp in classes for ch in unicodedata.normalize("NFD", chr(cp))
    )
    assert ord("A") in classes and ord("é") not in classes
    assert 0x391 not in classes and 0x410 not in classes  # Greek Alpha, Cyrillic A: homoglyphs
    assert 0x3A9 in classes and 0x2126 not in classes  # Omega kept, Ohm sign is its variant
    assert ord("Ж") in classes and ord("λ") in classes
    assert all(len(c.fonts) >= 8 for c in classes.values())
    assert [c.codepoint for c in glyph_classes()] == sorted(classes)


def test_catalogue_keeps_variants_when_asked():
    classes = {c.codepoint for c in glyph_classes(fold_accents=False, dedupe=False)}
    assert {ord("é"), 0x391, 0x410, ord("A")} <= classes
    assert len(classes) > len(glyph_classes())


def test_fonts_leave_out_those_whose_cmap_lies():
    names = [p.name for p in glyph_fonts()]
    assert "DejaVuSans.ttf" in names and "STIXGeneral.ttf" in names
    assert not any(n.startswith(("LastResort", "cm", "STIXSiz", "STIXNonUni")) for n in names)


def test_script_of():
    assert script_of(ord("a")) == "Latin"
    assert script_of(ord("Ж")) == "Cyrillic"
    assert script_of(ord("Ա")) == "Armenian"
    assert script_of(0x2192) == "Arrows"  # rightwards arrow
    assert script_of(0x2801) == "Braille"
    assert script_of(0x2500) == "Box drawing"


def test_cache_hit_reads_the_file_and_renders_nothing(tmp_path, monkeypatch):
    first = load_glyphs("all", **SMALL)
    files = _cache_files(tmp_path)
    assert len(files) == 1  # in $BIOPLASTIC_CACHE, one file for every split
    assert not list(files[0].parent.glob("*.tmp"))  # the atomic write left no temporary

    def fail(*args, **kwargs):
        raise AssertionError("rendered again despite the cache")

    monkeypatch.setattr(glyphs, "_render_instances", fail)
    monkeypatch.setattr(glyphs, "_catalogue", fail)
    again = load_glyphs("all", **SMALL)
    assert torch.equal(first.data, again.data) and torch.equal(first.targets, again.targets)
    assert first.class_codepoints == again.class_codepoints
    train = load_glyphs("train", split_by="script", **SMALL)  # other splits: same file
    assert len(train) > 0
    assert _cache_files(tmp_path) == files
    with pytest.raises(AssertionError, match="rendered again"):
        load_glyphs("all", seed=5, **SMALL)  # a different key is not a hit


def test_episode_sampler_runs_on_glyphs():
    data = load_glyphs("all", **SMALL)
    support_x, support_y, query_x, query_y = EpisodeSampler(
        data, ways=5, shots=1, queries=3, seed=0
    ).sample()
    assert support_x.shape == (5, 1, 28, 28) and query_x.shape == (15, 1, 28, 28)
    assert torch.equal(support_y, torch.arange(5)) and torch.equal(
        torch.bincount(query_y), 3 * torch.ones(5, dtype=torch.long)
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"split": "training"}, "split"),
        ({"split_by": "alphabet"}, "split_by"),
        ({"instances_per_class": 0}, "instances_per_class"),
        ({"min_fonts": 0}, "min_fonts"),
        ({"min_fonts": 1000}, "min_fonts"),
        ({"seed": -1}, "seed"),
        ({"max_classes": 0}, "max_classes"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_glyphs(**{**SMALL, **kwargs})


def test_uint8_quantisation_is_the_only_loss():
    data = load_glyphs("all", **SMALL)
    x, _ = data.tensors()
    assert np.allclose((x * 255).numpy(), np.round((x * 255).numpy()), atol=1e-4)


def test_glyph_environment_names_what_the_images_depend_on(monkeypatch):
    """matplotlib's version and fonts decide the images (3.10.9 and 3.11.2 differ): the
    environment that results record says which, and a different one renders a fresh cache."""
    import matplotlib

    env = glyphs.glyph_environment()
    assert env["matplotlib"] == matplotlib.__version__
    assert [name for name, _ in env["fonts"]] == [p.name for p in glyphs.glyph_fonts()]
    assert all(size > 0 for _, size in env["fonts"])
    args = dict(instances_per_class=2, min_fonts=8, seed=0, fold_accents=True, dedupe=True,
                max_classes=None)  # fmt: skip
    key = glyphs._cache_key(**args)
    monkeypatch.setattr(matplotlib, "__version__", "0.0.0")
    assert glyphs.glyph_environment()["matplotlib"] == "0.0.0" and glyphs._cache_key(**args) != key
