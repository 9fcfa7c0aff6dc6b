"""The words printed on an invoice, in English (the keys), German and French. Pure data.

The document's locale picks the language (`de_AT` -> German); a language not listed prints English. Every
language lists every key (tests/documents/test_html.py checks, and that the template uses only these), so
a page is never half translated. `{n}`, `{a}`, `{b}` are filled in by the renderer.
"""

from __future__ import annotations

from collections.abc import Callable

from meterstream.billing.taxes import (
    EXEMPT_MENTION,
    NOT_REGISTERED_MENTION,
    OUTSIDE_EU_B2B_MENTION,
    OUTSIDE_EU_B2C_MENTION,
    REVERSE_CHARGE_MENTION,
)

__all__ = ["FEE_BILLED_LATE", "FEE_CORRECTED", "KEYS", "LABELS", "LATE_USAGE", "MENTIONS", "translator"]

# an adjustment line's description (invoice_emitter/adjustments.py writes it in English, the document's data; the
# renderer prints it in the document's language): {a} the fee's name or the period, {b} the period or the meter
FEE_BILLED_LATE = "{a}, {b} (billed late)"  # a recurring fee of closed period {b} billed on a later invoice
FEE_CORRECTED = "{a}, {b} (corrected)"  # a fee of closed period {b} billed, and now owed less (or no more)
LATE_USAGE = "late usage for {a}: {b}"  # usage of closed period {a} that came after its close
# the tax mentions billing/taxes.py writes into a document (in English, its data): the page prints them in its
# language; a mention a tenant configured (its own exemption wording) is printed as written
MENTIONS = (REVERSE_CHARGE_MENTION, OUTSIDE_EU_B2B_MENTION, OUTSIDE_EU_B2C_MENTION, EXEMPT_MENTION,
            NOT_REGISTERED_MENTION)  # fmt: skip

KEYS = (
    "Invoice", "Draft invoice", "No number until finalized", "Not numbered",
    "Draft", "Issued", "Paid", "Partially paid", "Overdue", "Void",
    "Bill to", "VAT ID", "Invoice number", "Issue date", "Due date", "Billing period", "Customer", "Plan",
    "Currency", "Document", "Description", "Quantity", "Unit price", "Tax", "Amount",
    "Usage", "Fee", "Credit for unused days", "One-time charge", "Installment", "Minimum commitment",
    "Adjustment", "Discount", "plan", "subscription", "For", "Corrects", "of which {n} from the bundle",
    "Tier {n}: {a} – {b}", "Tier {n}: above {a}", "Packages", "Blocks", "Free units", "Billed units",
    "Minimum commitment: true-up", "Maximum: cap", "Percentage", "Flat fee", "Fixed fee", "Minimum per event",
    "Maximum per event", "flat", "Subtotal", "VAT reverse charge", "on", "Total", "Credits applied", "Amount due",
    "Amount due by {a}", "Usage by user", "User", "Page {a} of {b}", FEE_BILLED_LATE, FEE_CORRECTED, LATE_USAGE,
    "DRAFT", "VOID", *MENTIONS,
    # the credit note's page (templates/credit_note.html.j2)
    "Credit note", "Credit note number", "Issued on", "Credits invoice", "Invoice date", "Reason", "Net",
    "Total credited", "Amounts include tax as invoiced", "Deducted from the amount due", "To be refunded", "Applied",
    "Refund due", "Refunded", "Amount incl. tax",
)  # fmt: skip

LABELS: dict[str, dict[str, str]] = {
    "de": {
        "Credit note": "Rechnungskorrektur",
        "Credit note number": "Nummer der Rechnungskorrektur",
        "Issued on": "Ausgestellt am",
        "Credits invoice": "Korrigiert Rechnung",
        "Invoice date": "Rechnungsdatum",
        "Reason": "Grund",
        "Net": "Netto",
        "Total credited": "Korrekturbetrag",
        "Amounts include tax as invoiced": "Beträge inklusive Steuer wie in Rechnung gestellt",
        "Deducted from the amount due": "Vom offenen Betrag abgezogen",
        "To be refunded": "Zu erstatten",
        "Applied": "Verrechnet",
        "Refund due": "Erstattung ausstehend",
        "Refunded": "Erstattet",
        "Amount incl. tax": "Betrag brutto",
        "Invoice": "Rechnung",
        "Draft invoice": "Rechnungsentwurf",
        "No number until finalized": "Nummer bei Finalisierung",
        "Not numbered": "Ohne Nummer",
        "Draft": "Entwurf",
        "Issued": "Ausgestellt",
        "Paid": "Bezahlt",
        "Partially paid": "Teilweise bezahlt",
        "Overdue": "Überfällig",
        "Void": "Storniert",
        "Bill to": "Rechnungsempfänger",
        "VAT ID": "USt-IdNr.",
        "Invoice number": "Rechnungsnummer",
        "Issue date": "Rechnungsdatum",
        "Due date": "Fällig am",
        "Billing period": "Leistungszeitraum",
        "Customer": "Kunde",
        "Plan": "Tarif",
        "Currency": "Währung",
        "Document": "Dokument",
        "Description": "Beschreibung",
        "Quantity": "Menge",
        "Unit price": "Einzelpreis",
        "Tax": "USt.",
        "Amount": "Betrag",
        "Usage": "Nutzung",
        "Fee": "Grundgebühr",
        "Credit for unused days": "Gutschrift für ungenutzte Tage",
        "One-time charge": "Einmalige Gebühr",
        "Installment": "Rate",
        "Minimum commitment": "Mindestumsatz",
        "Adjustment": "Nachberechnung",
        "Discount": "Rabatt",
        "plan": "Tarif",
        "subscription": "Abonnement",
        "For": "Zeitraum",
        "Corrects": "Betrifft",
        "of which {n} from the bundle": "davon {n} aus dem Inklusivvolumen",
        "Tier {n}: {a} – {b}": "Stufe {n}: {a} – {b}",
        "Tier {n}: above {a}": "Stufe {n}: über {a}",
        "Packages": "Pakete",
        "Blocks": "Blöcke",
        "Free units": "Freieinheiten",
        "Billed units": "Abgerechnete Einheiten",
        "Minimum commitment: true-up": "Mindestumsatz: Ausgleich",
        "Maximum: cap": "Höchstbetrag: Begrenzung",
        "Percentage": "Prozentsatz",
        "Flat fee": "Pauschale",
        "Fixed fee": "Festgebühr",
        "Minimum per event": "Mindestbetrag je Ereignis",
        "Maximum per event": "Höchstbetrag je Ereignis",
        "flat": "pauschal",
        "Subtotal": "Zwischensumme",
        "VAT reverse charge": "Steuerschuldnerschaft des Leistungsempfängers",
        "on": "auf",
        "Total": "Gesamtbetrag",
        "Credits applied": "Verrechnetes Guthaben",
        "Amount due": "Zahlbetrag",
        "Amount due by {a}": "Zahlbar bis {a}",
        "Usage by user": "Nutzung nach Benutzer",
        "User": "Benutzer",
        "Page {a} of {b}": "Seite {a} von {b}",
        FEE_BILLED_LATE: "{a}, {b} (nachberechnet)",
        FEE_CORRECTED: "{a}, {b} (korrigiert)",
        LATE_USAGE: "Nachträgliche Nutzung für {a}: {b}",
        "DRAFT": "ENTWURF",
        "VOID": "STORNIERT",
        REVERSE_CHARGE_MENTION: "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge), Art. 196 Richtlinie "
        "2006/112/EG",
        OUTSIDE_EU_B2B_MENTION: "Keine Umsatzsteuer: Leistungsort außerhalb der EU, Art. 44 Richtlinie 2006/112/EG",
        OUTSIDE_EU_B2C_MENTION: "Keine Umsatzsteuer: Leistungsort außerhalb der EU, Art. 58 Richtlinie 2006/112/EG",
        EXEMPT_MENTION: "Steuerfrei",
        NOT_REGISTERED_MENTION: "Keine Umsatzsteuer berechnet: der Verkäufer ist nicht umsatzsteuerlich registriert",
    },
    "fr": {
        "Credit note": "Avoir",
        "Credit note number": "Numéro d'avoir",
        "Issued on": "Émis le",
        "Credits invoice": "Avoir sur la facture",
        "Invoice date": "Date de la facture",
        "Reason": "Motif",
        "Net": "Montant HT",
        "Total credited": "Total de l'avoir",
        "Amounts include tax as invoiced": "Montants TTC, comme facturés",
        "Deducted from the amount due": "Déduit du montant dû",
        "To be refunded": "À rembourser",
        "Applied": "Imputé",
        "Refund due": "Remboursement dû",
        "Refunded": "Remboursé",
        "Amount incl. tax": "Montant TTC",
        "Invoice": "Facture",
        "Draft invoice": "Projet de facture",
        "No number until finalized": "Numéro attribué à l'émission",
        "Not numbered": "Non numérotée",
        "Draft": "Brouillon",
        "Issued": "Émise",
        "Paid": "Payée",
        "Partially paid": "Partiellement payée",
        "Overdue": "En retard",
        "Void": "Annulée",
        "Bill to": "Facturé à",
        "VAT ID": "N° TVA",
        "Invoice number": "Numéro de facture",
        "Issue date": "Date d'émission",
        "Due date": "Date d'échéance",
        "Billing period": "Période de facturation",
        "Customer": "Client",
        "Plan": "Offre",
        "Currency": "Devise",
        "Document": "Document",
        "Description": "Désignation",
        "Quantity": "Quantité",
        "Unit price": "Prix unitaire",
        "Tax": "TVA",
        "Amount": "Montant",
        "Usage": "Consommation",
        "Fee": "Abonnement",
        "Credit for unused days": "Avoir pour jours non utilisés",
        "One-time charge": "Frais uniques",
        "Installment": "Échéance",
        "Minimum commitment": "Engagement minimum",
        "Adjustment": "Régularisation",
        "Discount": "Remise",
        "plan": "offre",
        "subscription": "abonnement",
        "For": "Période",
        "Corrects": "Régularise",
        "of which {n} from the bundle": "dont {n} inclus dans le forfait",
        "Tier {n}: {a} – {b}": "Palier {n} : {a} – {b}",
        "Tier {n}: above {a}": "Palier {n} : au-delà de {a}",
        "Packages": "Lots",
        "Blocks": "Blocs",
        "Free units": "Unités gratuites",
        "Billed units": "Unités facturées",
        "Minimum commitment: true-up": "Engagement minimum : complément",
        "Maximum: cap": "Plafond",
        "Percentage": "Pourcentage",
        "Flat fee": "Forfait",
        "Fixed fee": "Frais fixes",
        "Minimum per event": "Minimum par événement",
        "Maximum per event": "Maximum par événement",
        "flat": "forfait",
        "Subtotal": "Sous-total HT",
        "VAT reverse charge": "Autoliquidation de la TVA",
        "on": "sur",
        "Total": "Total",
        "Credits applied": "Crédits imputés",
        "Amount due": "Net à payer",
        "Amount due by {a}": "Net à payer avant le {a}",
        "Usage by user": "Consommation par utilisateur",
        "User": "Utilisateur",
        "Page {a} of {b}": "Page {a} sur {b}",
        FEE_BILLED_LATE: "{a}, {b} (facturé tardivement)",
        FEE_CORRECTED: "{a}, {b} (régularisé)",
        LATE_USAGE: "Consommation tardive pour {a} : {b}",
        "DRAFT": "BROUILLON",
        "VOID": "ANNULÉE",
        REVERSE_CHARGE_MENTION: "Autoliquidation : TVA due par le preneur, art. 196 de la directive 2006/112/CE",
        OUTSIDE_EU_B2B_MENTION: "TVA non applicable : lieu de prestation hors de l'UE, art. 44 de la directive "
        "2006/112/CE",
        OUTSIDE_EU_B2C_MENTION: "TVA non applicable : lieu de prestation hors de l'UE, art. 58 de la directive "
        "2006/112/CE",
        EXEMPT_MENTION: "Exonéré de TVA",
        NOT_REGISTERED_MENTION: "TVA non facturée : le vendeur n'est pas assujetti à la TVA",
    },
}


def translator(locale: str) -> Callable[..., str]:
    """`t(key, **values)`: the key in the locale's language (English when not listed), values filled in."""
    table = LABELS.get(locale.split("_")[0], {})

    def t(key: str, **values: str) -> str:
        if key not in KEYS:
            raise KeyError(f"label {key!r} is not in documents/labels.py KEYS")
        text = table.get(key, key)
        return text.format(**values) if values else text

    return t
