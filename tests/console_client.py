"""A client that uses the console as a browser does: no Authorization header, only its cookies."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
# What a console page loads besides itself: scripts and stylesheets, all served by the gateway.
ASSETS = re.compile(r'(?:src|href)="(/console/static/[^"]+)"')


def console_client(url: str) -> httpx.Client:
    """Sends the console's ``Secure`` cookies to http://127.0.0.1, as browsers do for loopback (a potentially
    trustworthy origin); Python's cookie jar keeps them for https only, so they are added here."""
    client = httpx.Client(base_url=url, timeout=30)

    def secure_cookies(request: httpx.Request) -> None:
        held = [cookie for cookie in client.cookies.jar if request.url.path.startswith(cookie.path)]
        if held:
            request.headers["cookie"] = "; ".join(f"{cookie.name}={cookie.value}" for cookie in held)

    client.event_hooks["request"] = [secure_cookies]
    return client


def log_in(console: httpx.Client, key: str) -> httpx.Response:
    token = CSRF.search(console.get("/console/login").text).group(1)
    return console.post("/console/login", data={"api_key": key, "_csrf_token": token})
