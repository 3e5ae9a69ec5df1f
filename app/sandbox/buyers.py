"""Fake but realistic Korean buyers for the sandbox's Get Order answers (name, mobile number, road
address, zip code), so that bunsync's handling of personal data is exercised with what Bunjang really
sends: Hangul names, 010 numbers, 도로명 addresses with building and unit."""

from __future__ import annotations

import random

_SURNAMES = ("김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황")
_GIVEN = (
    "민준", "서연", "도윤", "하은", "시우", "지우", "주원", "서윤", "예준", "지민",
    "하준", "수아", "지호", "채원", "현우", "다은", "건우", "예린", "우진", "소율",
)  # fmt: skip
# (city and district, road, zip code range of that district)
_PLACES = (
    ("서울특별시 마포구", "월드컵로", (3900, 4199)),
    ("서울특별시 강남구", "테헤란로", (6000, 6399)),
    ("서울특별시 송파구", "올림픽로", (5500, 5899)),
    ("부산광역시 해운대구", "센텀중앙로", (48000, 48199)),
    ("대구광역시 수성구", "동대구로", (42000, 42299)),
    ("인천광역시 연수구", "컨벤시아대로", (21900, 22099)),
    ("광주광역시 서구", "상무대로", (61900, 62099)),
    ("대전광역시 유성구", "대학로", (34100, 34299)),
    ("경기도 성남시 분당구", "판교역로", (13400, 13699)),
    ("제주특별자치도 제주시", "연북로", (63100, 63299)),
)
_BRANDS = ("래미안", "푸르지오", "자이", "힐스테이트", "e편한세상", "아이파크")


def buyer_fields(rng: random.Random) -> tuple[str, str, str, str, str]:
    """(name, phone, address1, address2, zip code) of a random buyer."""
    name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
    phone = f"010-{rng.randint(2000, 9999)}-{rng.randint(0, 9999):04d}"
    district, road, (low, high) = rng.choice(_PLACES)
    address1 = f"{district} {road} {rng.randint(1, 400)}"
    unit = f"{rng.randint(101, 120)}동 {rng.randint(1, 25)}{rng.randint(1, 4):02d}호"
    address2 = f"{rng.choice(_BRANDS)} {unit}"
    return name, phone, address1, address2, f"{rng.randint(low, high):05d}"
