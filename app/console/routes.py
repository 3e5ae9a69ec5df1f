"""The operator console's routes (server-rendered HTML) and ``GET /api/orders/{order_id}``.

:func:`console_handlers` returns the Litestar handlers that ``bunsync serve`` mounts on the operator
listener through ``create_admin_app(services, extra_handlers=...)``; the listener's one guard protects
them (bearer header or the sign-in session), except the sign-in form and the static assets (public).
Pages read with JS off; state changes are POST forms with a CSRF token and a confirmation page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.types import ControllerRouterHandler

from app import fetcher
from app.console import pages
from app.console.auth import SESSION_COOKIE, SESSION_TTL_S, Csrf, new_session
from app.http.webhook_app import Services
from app.ops import explain, reasons

PUBLIC: dict[str, Any] = {"public": True}
_ASSETS = resources.files("app.console")
_STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
_HTML = "text/html; charset=utf-8"
_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("app.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = reasons.when
    env.filters["iso"] = pages.utc_iso
    env.filters["source"] = reasons.source_name
    return env


def console_handlers(services: Services) -> list[ControllerRouterHandler]:
    """Every console route, bound to ``services``."""
    env = _environment()
    csrf = Csrf(services.settings.admin_token)
    token = services.settings.admin_token
    pool = services.pool
    minutes = pages.MinuteCache()

    def render(name: str, status_code: int = 200, **context: Any) -> Response[str]:
        html = env.get_template(name).render(
            csrf=csrf.token(), signed_in=token is not None, now=datetime.now(UTC), **context
        )
        return Response(html, status_code=status_code, media_type=_HTML, headers=_SECURITY)

    async def checked_form(request: Request[Any, Any, Any]) -> dict[str, str]:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
        bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
        if not bearer and not csrf.accepts(fields.get("csrf"), request.headers.get("sec-fetch-site")):
            raise PermissionDeniedException()
        return fields

    @get("/", name="overview")
    async def overview() -> Response[str]:
        return render("overview.html", view=await pages.overview(pool, minutes), page="overview")

    @get("/search")
    async def search(q: FromQuery[str] = "") -> Response[Any]:
        order_id = await explain.find_order(pool, q.strip()[:200])
        if order_id is None:
            return render("not_found.html", 404, what=q.strip()[:200], page="search")
        return Redirect(f"/orders/{order_id}", status_code=303)

    @get("/orders/{order_id:int}")
    async def order(order_id: FromPath[int]) -> Response[str]:
        found = await explain.explain(pool, order_id)
        if found is None:
            return render("not_found.html", 404, what=f"order {order_id}", page="search")
        return render("order.html", x=found[0], payloads=found[1], page="order")

    @get("/api/orders/{order_id:int}")
    async def api_order(order_id: FromPath[int]) -> Response[bytes]:
        found = await explain.explain(pool, order_id)
        if found is None:
            raise NotFoundException()
        return Response(explain.encode_json(found[0]), media_type="application/json")

    @get("/dead-letters")
    async def dead_letters(page: FromQuery[str] = "1", done: FromQuery[str] = "") -> Response[str]:
        number = pages.page_number(page)
        rows, more = await pages.page(pool, "dead_page", number)
        return render("dead.html", rows=rows, number=number, more=more, done=done[:200], page="dead")

    @post("/dead-letters/redrive")
    async def redrive(request: Request[Any, Any, Any]) -> Response[Any]:
        form = await checked_form(request)
        which = form.get("order_id", "all")
        if form.get("confirmed") != "yes":
            what = "every dead fetch" if which == "all" else f"the dead fetch of order {which}"
            return render(
                "confirm.html",
                action="/dead-letters/redrive",
                fields={"order_id": which},
                question=f"Re-queue {what}?",
                page="dead",
            )
        ids = None if which == "all" else [_int(which)]
        done = await fetcher.redrive(pool, ids)
        return Redirect(f"/dead-letters?done=re-queued+{len(done)}+fetch(es)", status_code=303)

    @get("/parked")
    async def parked(page: FromQuery[str] = "1", done: FromQuery[str] = "") -> Response[str]:
        number = pages.page_number(page)
        rows, more = await pages.page(pool, "parked_page", number)
        return render("parked.html", rows=rows, number=number, more=more, done=done[:200], page="parked")

    @post("/parked/retry")
    async def retry(request: Request[Any, Any, Any]) -> Response[Any]:
        form = await checked_form(request)
        projection, position = form.get("projection"), form.get("position")
        if form.get("confirmed") != "yes":
            what = f"event {position} of {projection}" if projection else "every parked event"
            return render(
                "confirm.html",
                action="/parked/retry",
                page="parked",
                question=f"Retry {what}?",
                fields={k: v for k, v in (("projection", projection), ("position", position)) if v},
            )
        count = await pages.retry_parked(pool, projection, _int(position) if position else None)
        return Redirect(f"/parked?done=asked+for+{count}+retry(ies)", status_code=303)

    @get("/reconcile")
    async def passes(page: FromQuery[str] = "1") -> Response[str]:
        number = pages.page_number(page)
        rows, more = await pages.page(pool, "passes_page", number)
        return render("passes.html", rows=rows, number=number, more=more, page="reconcile")

    @get("/sign-in", opt=PUBLIC)
    async def sign_in_form(error: FromQuery[str] = "") -> Response[str]:
        return render("sign_in.html", error=bool(error), page="sign-in")

    @post("/sign-in", opt=PUBLIC)
    async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
        form = await checked_form(request)
        if token is None:
            return Redirect("/", status_code=303)
        from app.http.operator_app import token_matches  # the listener's own comparison

        if not token_matches(form.get("token", ""), token):
            return Redirect("/sign-in?error=1", status_code=303)
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=new_session(token),
            httponly=True,
            samesite="strict",
            path="/",
            max_age=SESSION_TTL_S,
        )
        return Redirect("/", status_code=303, cookies=[cookie])

    @post("/sign-out", opt=PUBLIC)
    async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
        await checked_form(request)
        cookie = Cookie(key=SESSION_COOKIE, value="", httponly=True, samesite="strict", path="/", max_age=0)
        return Redirect("/sign-in", status_code=303, cookies=[cookie])

    @get("/static/{name:str}", opt=PUBLIC)
    async def static(name: FromPath[str]) -> Response[bytes]:
        if name not in _STATIC:
            raise NotFoundException()
        body = _ASSETS.joinpath("static", name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"Cache-Control": "max-age=3600"})

    return [
        overview,
        search,
        order,
        api_order,
        dead_letters,
        redrive,
        parked,
        retry,
        passes,
        sign_in_form,
        sign_in,
        sign_out,
        static,
    ]


def _int(raw: str | None) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        raise NotFoundException() from None
    if not -(2**63) <= value < 2**63:
        raise NotFoundException()
    return value
