"""Places: which documents a question or an asker's region prefers, and which places the
corpus knows nothing about.

Each document's manifest region (province / city / county) gives the place names it answers
for, with their short forms ("神木市" → "神木"). A named place ranks documents in tiers:

0. the document *for* that place (神木 → the 神木市 document);
1. documents above or below it (神木 → the 陕西省 plan; 陕西 → the county plans in 陕西);
2. other documents of the same province (神木 → 白河县);
3. everything else (神木 → 城口县 in 重庆, 陵川县 in 山西).

A province in ``data/places.tsv`` that has no document and is never mentioned in the corpus
(by name, or by its one-character abbreviation paired with a corpus province, as in "川渝",
"苏陕") is *unknown*: a question about it cannot be answered from these documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from knowledge.corpus import Document

__all__ = ["Place", "Gazetteer"]

# Words that make a following place the location of an action rather than a policy's owner.
_AT = frozenset({"在", "去", "到", "从", "往", "来自", "跑到", "远在"})
_SUFFIX = re.compile(r"(特别行政区|维吾尔自治区|壮族自治区|回族自治区|自治区|自治州|自治县|省|市|县|区|旗)$")


@dataclass(frozen=True, slots=True)
class Place:
    """A place named in a question or a region string, resolved against the corpus."""

    name: str  # the canonical name, e.g. "神木市"
    level: str  # "province" | "city" | "county"
    province: str | None
    city: str | None


def _aliases(name: str) -> list[str]:
    out = [name]
    short = _SUFFIX.sub("", name)
    if short != name and len(short) >= 2:
        out.append(short)
    return out


def _read_provinces() -> list[tuple[str, str, str, list[str]]]:
    path = resources.files("knowledge") / "data" / "places.tsv"
    rows = []
    for line in path.read_text("utf-8").split("\n"):
        if not line or line.startswith("#"):
            continue
        full, short, abbr, cities = (line.split("\t") + ["", "", ""])[:4]
        rows.append((full, short, abbr, cities.split()))
    return rows


class Gazetteer:
    """Place lookup built from the corpus manifest and the province list."""

    def __init__(self, docs: list[Document]) -> None:
        self._places: dict[str, Place] = {}
        self._alias_map: dict[str, Place] = {}
        self._doc_region: dict[str, dict[str, str | None]] = {}
        for d in docs:
            r = d.region
            self._doc_region[d.file] = r
            prov, city, county = r.get("province"), r.get("city"), r.get("county")
            if prov:
                self._add(Place(prov, "province", prov, None))
            if city:
                self._add(Place(city, "city", prov, city))
            if county:
                self._add(Place(county, "county", prov, city))
        self._alias_list = sorted(self._alias_map, key=len, reverse=True)
        corpus_text = "".join(d.text for d in docs)
        corpus_provinces = {d.region.get("province") for d in docs if d.region.get("province")}
        rows = _read_provinces()
        corpus_abbr = {abbr for full, _, abbr, _ in rows if full in corpus_provinces and abbr}
        self._unknown: dict[str, str] = {}
        for full, short, abbr, cities in rows:
            if full in corpus_provinces:
                continue
            mentioned = full in corpus_text or (short and short in corpus_text)
            if not mentioned and abbr:
                mentioned = any(
                    f"{abbr}{other}" in corpus_text or f"{other}{abbr}" in corpus_text
                    for other in corpus_abbr
                    if other != abbr
                )
            if not mentioned:
                for alias in (full, short):
                    if alias and len(alias) >= 2:
                        self._unknown[alias] = full
            # A major city of a province without documents names that province, unless the
            # corpus itself speaks of the city ("重庆、成都、西安" in the Chengkou plan).
            for city in cities:
                if city not in corpus_text and (not mentioned or full not in corpus_provinces):
                    self._unknown[city] = full

    def _add(self, place: Place) -> None:
        for alias in _aliases(place.name):
            self._alias_map.setdefault(alias, place)
        self._places[place.name] = place

    def aliases(self, place: Place) -> list[str]:
        """The names a place goes by ("神木市", "神木")."""
        return _aliases(place.name)

    def find(self, text: str) -> list[Place]:
        """Corpus places named in ``text``, longest names first, each once, in text order."""
        found: list[tuple[int, Place]] = []
        taken = [False] * len(text)
        for alias in self._alias_list:
            start = 0
            while (at := text.find(alias, start)) >= 0:
                if not any(taken[at : at + len(alias)]):
                    for i in range(at, at + len(alias)):
                        taken[i] = True
                    found.append((at, self._alias_map[alias]))
                start = at + 1
        seen: set[str] = set()
        out = []
        for _, place in sorted(found, key=lambda x: x[0]):
            if place.name not in seen:
                seen.add(place.name)
                out.append(place)
        return out

    def most_specific(self, text: str | None) -> Place | None:
        """The most specific corpus place in a region string such as "陕西省榆林市神木市"."""
        if not text:
            return None
        order = {"county": 0, "city": 1, "province": 2}
        places = self.find(text)
        return min(places, key=lambda p: order[p.level]) if places else None

    def unknown_places(self, text: str) -> list[str]:
        """Provinces named in ``text`` that the corpus has no document for and never mentions.

        A place the asker is *at* ("在深圳打工", "去广东务工", "从河南回来") is where something
        happens, not whose policy is asked about, so it does not count.
        """
        found = set()
        for alias, full in self._unknown.items():
            start = 0
            while (at := text.find(alias, start)) >= 0:
                start = at + 1
                if text[max(0, at - 1) : at] in _AT or text[max(0, at - 2) : at] in _AT:
                    continue
                found.add(full)
        return sorted(found)

    def tier(self, doc: str, place: Place) -> int:
        """How well document ``doc`` answers for ``place``: 0 best … 3 unrelated."""
        r = self._doc_region.get(doc, {})
        prov, city, county = r.get("province"), r.get("city"), r.get("county")
        doc_name = county or city or prov
        if doc_name == place.name:
            return 0
        if place.level == "county":
            if county is None and (
                (place.city is not None and city == place.city) or (city is None and prov == place.province)
            ):
                return 1  # the city or province plan above the county
        elif place.level == "city":
            if county is None and city is None and prov == place.province:
                return 1
            if city == place.name:
                return 1  # a county plan within the city
        elif place.level == "province" and prov == place.name:
            return 1  # a city or county plan within the province
        if prov is not None and prov == place.province:
            return 2
        return 3
