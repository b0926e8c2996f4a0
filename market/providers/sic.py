"""GICS sectors from SEC SIC codes, for universes whose source gives no sector.

Polygon's ticker details carry the company's SIC code (``sic_code``), not a GICS sector. This
maps SIC ranges to the 11 GICS sectors the scanner uses (the 2018 structure, with media under
Consumer Discretionary and telecom carriers under Telecommunication Services). The mapping is
coarse by nature, since SIC classifies establishments by product and GICS companies by business:
it is right for most large caps and wrong for some conglomerates and platform companies (an
internet retailer filed under "services-business services" lands in Industrials). Prefer a
universe file with real GICS sectors (``TECHNIC_UNIVERSE_PATH``) when you have one.
"""

from __future__ import annotations

UNKNOWN_SECTOR = "Unclassified"

# (first, last, sector), first match wins: narrow ranges come before the wide ones they sit in.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (100, 999, "Consumer Staples"),  # agriculture, forestry, fishing
    (1000, 1099, "Materials"),  # metal mining
    (1200, 1399, "Energy"),  # coal, oil and gas extraction and services
    (1400, 1499, "Materials"),  # non-metallic minerals
    (1500, 1799, "Industrials"),  # construction
    (2000, 2199, "Consumer Staples"),  # food, beverages, tobacco
    (2200, 2399, "Consumer Discretionary"),  # textiles, apparel
    (2400, 2499, "Materials"),  # lumber, wood
    (2500, 2599, "Consumer Discretionary"),  # furniture
    (2600, 2699, "Materials"),  # paper
    (2700, 2799, "Consumer Discretionary"),  # publishing, printing (media)
    (2830, 2836, "Health Care"),  # drugs, biologicals
    (2840, 2844, "Consumer Staples"),  # soaps, cosmetics
    (2800, 2899, "Materials"),  # chemicals
    (2900, 2999, "Energy"),  # petroleum refining
    (3000, 3099, "Materials"),  # rubber, plastics
    (3100, 3199, "Consumer Discretionary"),  # leather
    (3200, 3399, "Materials"),  # stone, glass, primary metals
    (3400, 3499, "Industrials"),  # fabricated metal products
    (3570, 3579, "Information Technology"),  # computers, office machines
    (3500, 3599, "Industrials"),  # industrial machinery
    (3630, 3639, "Consumer Discretionary"),  # household appliances
    (3600, 3699, "Information Technology"),  # electronic equipment, semiconductors
    (3710, 3716, "Consumer Discretionary"),  # motor vehicles
    (3700, 3799, "Industrials"),  # aircraft, ships, railroad equipment
    (3840, 3851, "Health Care"),  # medical instruments and supplies
    (3800, 3899, "Information Technology"),  # measuring and photographic instruments
    (3900, 3999, "Consumer Discretionary"),  # jewellery, toys, other manufacturing
    (4000, 4799, "Industrials"),  # transportation
    (4830, 4841, "Consumer Discretionary"),  # broadcasting, cable (media)
    (4800, 4899, "Telecommunication Services"),  # telephone and other communications
    (4900, 4999, "Utilities"),  # electric, gas, water, sanitary
    (5120, 5122, "Health Care"),  # drug wholesale
    (5140, 5149, "Consumer Staples"),  # grocery wholesale
    (5000, 5199, "Industrials"),  # wholesale
    (5400, 5499, "Consumer Staples"),  # food stores
    (5912, 5912, "Consumer Staples"),  # drug stores
    (5200, 5999, "Consumer Discretionary"),  # retail
    (6500, 6553, "Real Estate"),  # real estate operators, developers
    (6798, 6798, "Real Estate"),  # real estate investment trusts
    (6000, 6799, "Financials"),  # banks, brokers, insurance, holding companies
    (7370, 7379, "Information Technology"),  # software, data processing
    (7000, 7299, "Consumer Discretionary"),  # hotels, personal services
    (7300, 7399, "Industrials"),  # business services
    (7500, 7999, "Consumer Discretionary"),  # repair, motion pictures, amusement
    (8000, 8099, "Health Care"),  # health services
    (8200, 8299, "Consumer Discretionary"),  # education
    (8000, 8999, "Industrials"),  # engineering, management and other services
    (9995, 9995, "Financials"),  # blank-check companies
)


def gics_sector(sic_code: str | int | None) -> str:
    """The GICS sector of a SIC code, or :data:`UNKNOWN_SECTOR` for none or an unmapped one."""
    try:
        code = int(str(sic_code).strip())
    except ValueError:
        return UNKNOWN_SECTOR
    for first, last, sector in _RANGES:
        if first <= code <= last:
            return sector
    return UNKNOWN_SECTOR
