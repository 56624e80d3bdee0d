# Checked by mypy in tests/test_typing.py: if @cached stops keeping signatures, the
# assert_type lines fail, and the "type: ignore" lines become unused ignores (an error).
from __future__ import annotations

from django.http import HttpRequest
from django.http import HttpResponse
from typing_extensions import assert_type

from cachedcall import Cached
from cachedcall import cached
from cachedcall import cached_view


@cached(timeout=60)
def club_classes(club: str, weekday: int | None = None) -> list[str]:
    return [club]


@cached
def bare(x: int) -> int:
    return x


@cached(timeout=60)
async def aclasses(club: str) -> list[str]:
    return [club]


@cached_view(600, per_user=True)
def club_page(request: HttpRequest, clubname: str) -> HttpResponse:
    return HttpResponse(clubname)


def use_view(request: HttpRequest) -> None:
    assert_type(club_page(request, "chess"), HttpResponse)
    club_page(request, 3)  # type: ignore[arg-type]


class Clubs:
    @cached(timeout=60)
    def classes(self, weekday: int) -> list[int]:
        return [weekday]


assert_type(club_classes("chess"), list[str])
assert_type(club_classes("chess", weekday=2), list[str])
assert_type(club_classes.key("chess"), str)
assert_type(club_classes.refresh("chess"), list[str])
assert_type(bare(1), int)
assert_type(Clubs().classes(3), list[int])
assert_type(Clubs().classes.key(3), str)
checked: Cached[[str, int | None], list[str]] = club_classes


async def use() -> None:
    assert_type(await aclasses("x"), list[str])


club_classes(3)  # type: ignore[arg-type]
club_classes("chess", nope=1)  # type: ignore[call-arg]
club_classes.invalidate("chess", "monday")  # type: ignore[arg-type]
Clubs().classes("x")  # type: ignore[arg-type]
bare()  # type: ignore[call-arg]


def use_map() -> None:
    assert_type(club_classes.map(["chess", "go"]), list[list[str]])
    assert_type(club_classes.starmap([("chess", 2)]), list[list[str]])


async def use_amap() -> None:
    assert_type(await aclasses.map(["chess"]), list[list[str]])
    assert_type(await aclasses.starmap([("chess",)]), list[list[str]])
