"""Invoice documents for people: HTML (Jinja2 + babel), PDF (WeasyPrint), PNG preview (pypdfium2)."""
