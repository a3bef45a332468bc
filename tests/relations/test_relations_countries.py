"""Country facts cross-checked against ISO 3166 / ISO 639 (pycountry, a test-only dependency)."""

from __future__ import annotations

import pycountry
import pytest

import headmaps.relations as R

#: The 193 UN member states (ISO 3166-1 alpha-3), written out here independently of the data.
UN_MEMBERS = set("""
AFG AGO ALB AND ARE ARG ARM ATG AUS AUT AZE BDI BEL BEN BFA BGD BGR BHR BHS BIH BLR BLZ BOL BRA
BRB BRN BTN BWA CAF CAN CHE CHL CHN CIV CMR COD COG COL COM CPV CRI CUB CYP CZE DEU DJI DMA DNK
DOM DZA ECU EGY ERI ESP EST ETH FIN FJI FRA FSM GAB GBR GEO GHA GIN GMB GNB GNQ GRC GRD GTM GUY
HND HRV HTI HUN IDN IND IRL IRN IRQ ISL ISR ITA JAM JOR JPN KAZ KEN KGZ KHM KIR KNA KOR KWT LAO
LBN LBR LBY LCA LIE LKA LSO LTU LUX LVA MAR MCO MDA MDG MDV MEX MHL MKD MLI MLT MMR MNE MNG MOZ
MRT MUS MWI MYS NAM NER NGA NIC NLD NOR NPL NRU NZL OMN PAK PAN PER PHL PLW PNG POL PRK PRT PRY
QAT ROU RUS RWA SAU SDN SEN SGP SLB SLE SLV SMR SOM SRB SSD STP SUR SVK SVN SWE SWZ SYC SYR TCD
TGO THA TJK TKM TLS TON TTO TUN TUR TUV TZA UGA UKR URY USA UZB VCT VEN VNM VUT WSM YEM ZAF ZMB
ZWE
""".split())
#: The sovereign states the data covers: UN members plus the Holy See (observer state).
SOVEREIGN = UN_MEMBERS | {"VAT"}

#: Common English names used in the data that pycountry.countries.lookup does not resolve.
COUNTRY_ALIASES = {
    "Russia": "RUS", "Turkey": "TUR", "Ivory Coast": "CIV", "East Timor": "TLS",
    "Vatican City": "VAT",
    "Micronesia": "FSM", "Democratic Republic of the Congo": "COD", "Cape Verde": "CPV",
    "Brunei": "BRN",
    "São Tomé and Príncipe": "STP",
}
#: Language names used in the data whose ISO 639 entry pycountry names differently.
LANGUAGE_ALIASES = {"Greek": "ell", "Malay": "msa", "Dhivehi": "div", "Nepali": "nep"}


def alpha3(country: str) -> str:
    if country in COUNTRY_ALIASES:
        code = COUNTRY_ALIASES[country]
        assert pycountry.countries.get(alpha_3=code) is not None, code
        return code
    return pycountry.countries.lookup(country).alpha_3


def test_un_member_list_is_193():
    assert len(UN_MEMBERS) == 193
    assert all(pycountry.countries.get(alpha_3=c) is not None for c in SOVEREIGN)


@pytest.mark.parametrize("name", ["country_to_capital", "country_to_language"])
def test_every_sovereign_state_is_covered_or_excluded(name):
    info = R.info(name)
    pairs = R.load(name)
    excluded = info.extra["excluded"]
    assert excluded and all(isinstance(v, str) and v for v in excluded.values())
    covered = [alpha3(c) for c, _ in pairs]
    left_out = [alpha3(c) for c in excluded]
    assert len(covered) == len(set(covered)), "a state appears twice"
    assert not set(covered) & set(left_out), "a state is both covered and excluded"
    assert set(covered) | set(left_out) == SOVEREIGN


def test_capitals_are_unambiguous_majority():
    pairs = dict(R.load("country_to_capital"))
    assert len(pairs) >= 180
    assert pairs["France"] == "Paris" and pairs["Japan"] == "Tokyo"
    assert pairs["Australia"] == "Canberra"
    assert pairs["Netherlands"] == "Amsterdam" and pairs["Switzerland"] == "Bern"
    excluded = R.info("country_to_capital").extra["excluded"]
    assert {"Bolivia", "South Africa", "Sri Lanka"} <= set(excluded)


def test_capital_names_are_not_country_subdivision_typos():
    """A capital has the country's name only for city-states and Djibouti, Luxembourg."""
    same_name = {"Singapore", "Monaco", "Vatican City", "San Marino", "Luxembourg", "Djibouti"}
    for country, capital in R.load("country_to_capital"):
        assert (capital == country) == (country in same_name), (country, capital)


def test_languages_resolve_in_iso_639():
    for language in sorted({lang for _, lang in R.load("country_to_language")}):
        if language in LANGUAGE_ALIASES:
            assert pycountry.languages.get(alpha_3=LANGUAGE_ALIASES[language]) is not None
        else:
            pycountry.languages.lookup(language)  # raises LookupError when unknown


def test_language_facts_sample():
    pairs = dict(R.load("country_to_language"))
    assert pairs["Brazil"] == "Portuguese" and pairs["Egypt"] == "Arabic"
    assert pairs["Austria"] == "German"
    assert "Switzerland" not in pairs and "Canada" not in pairs and "India" not in pairs
