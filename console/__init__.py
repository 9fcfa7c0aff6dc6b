"""The web console: server-rendered pages (Jinja2, server-side SVG charts, no JavaScript) under /console.

One module per page group: `session` (log in with an API key, log out), `customers` (customers, their usage over
time per meter and per subject, the current period's running amount), `invoices` (invoices and drafts, with their
HTML and PDF), `dead_letters` (the tenant's dead letters, replay), `health` (pipeline health); `charts` draws,
`web` holds what they share and `mount(app)`, which api/app.py calls.
"""

from meterstream.console.web import mount

__all__ = ["mount"]
