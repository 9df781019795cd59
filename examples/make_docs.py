"""Regenerate the binary sample documents under ``examples/docs/``.

The Markdown, text and HTML samples are plain files checked in as-is; only the
PDF and the Word document are produced here, so they can be rebuilt after an
edit to the text below::

    .venv/bin/pip install fpdf2
    .venv/bin/python examples/make_docs.py

``fpdf2`` and ``python-docx`` are needed only to *generate* these files; they
are not runtime dependencies of ``kb``. Output is deterministic (fixed
timestamps), so re-running the script does not produce spurious diffs.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from docx import Document
from fpdf import FPDF, XPos, YPos

DOCS_DIR = Path(__file__).resolve().parent / "docs"
FIXED_DATE = datetime(2026, 4, 6, 9, 0, 0, tzinfo=UTC)

Kind = Literal["h1", "h2", "p", "li", "code", "pagebreak"]
Block = tuple[Kind, str]

# --------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------

RUNBOOK_TITLE = "Lumen On-Call Runbook"
RUNBOOK: list[Block] = [
    ("p", "Internal document, version 3. Owner: Platform team. Last reviewed 2026-03-20."),
    ("h1", "1. Purpose"),
    (
        "p",
        "This runbook tells the on-call engineer how to triage, escalate and close "
        "incidents affecting the Lumen sync service. If something here is wrong or "
        "missing, fix it after the incident, not during it.",
    ),
    ("h1", "2. Rotation"),
    ("li", "The rotation is weekly, with one primary and one secondary engineer."),
    ("li", "Handoff happens every Monday at 10:00 UTC in the #lumen-oncall channel."),
    (
        "li",
        "The outgoing primary writes a handoff note listing open incidents, "
        "silenced alerts and any risky deploys planned for the week.",
    ),
    ("li", "Swaps are allowed; update the paging schedule before the swap starts."),
    ("h1", "3. Severity levels"),
    (
        "li",
        "SEV1 - sync is down for all users, or there is a risk of data loss. "
        "Acknowledge the page within 15 minutes and post a status page update "
        "within 30 minutes.",
    ),
    (
        "li",
        "SEV2 - service is degraded: sync delays above 5 minutes or an error rate "
        "above 5%. Acknowledge within 1 hour.",
    ),
    ("li", "SEV3 - a single customer or cosmetic issue. Handle on the next business day."),
    ("h1", "4. Escalation"),
    (
        "p",
        "If the primary does not acknowledge a SEV1 page within 15 minutes, the "
        "secondary is paged automatically. If a SEV1 is still unresolved after "
        "30 minutes, page the engineering manager, Dana Whitfield. Never wait "
        "alone on a SEV1: pull in help early.",
    ),
    ("pagebreak", ""),
    ("h1", "5. Common incidents"),
    ("h2", "5.1 Health check failing"),
    ("p", "Confirm from the host itself, then read the recent log before restarting:"),
    ("code", "curl -fsS http://localhost:8743/healthz"),
    ("code", 'journalctl -u lumen --since "15 min ago"'),
    ("code", "sudo systemctl restart lumen"),
    ("h2", "5.2 Disk usage above 85%"),
    (
        "p",
        "The disk alert fires when the data volume passes 85%. Prune old backups "
        "with 'lumen backup prune --keep 7'. Never delete files in "
        "/var/lib/lumen/vaults by hand.",
    ),
    ("h2", "5.3 Spike in HTTP 429 responses"),
    (
        "p",
        "Usually a single token is exceeding 120 requests per minute. Find it with "
        "'lumen tokens top' and contact the owner; revoke the token only if the "
        "traffic looks abusive.",
    ),
    ("h2", "5.4 Migration stuck after upgrading to 2.4.x"),
    (
        "p",
        "The 2.4.0 database migration takes about 1 minute per 100,000 notes. Do "
        "not stop the server while it runs; watch progress in the log instead.",
    ),
    ("h1", "6. After the incident"),
    (
        "p",
        "Write a blameless postmortem within 5 business days for every SEV1 and "
        "SEV2, using the template in the team wiki. Action items get an owner and "
        "a due date before the postmortem is closed.",
    ),
]

POLICY_TITLE = "Lumen Licensing and Refund Policy"
POLICY: list[Block] = [
    (
        "p",
        "Effective 2026-01-01. This policy applies to all Lumen server licenses "
        "purchased from Lumen Labs.",
    ),
    ("h1", "Editions"),
    ("h2", "Community Edition"),
    (
        "p",
        "Free for up to 5 users. Includes all sync features and end-to-end "
        "encryption. Support is provided by the community forum only.",
    ),
    ("h2", "Team Edition"),
    (
        "p",
        "USD 8 per user per month, billed annually (USD 96 per user per year). "
        "Adds single sign-on (SAML and OIDC), audit logs and email support with a "
        "response within one business day.",
    ),
    ("h2", "Enterprise Edition"),
    (
        "p",
        "Custom pricing for 100 users or more. Adds priority support with a "
        "1-hour response time for SEV1 issues and a named technical contact.",
    ),
    ("h1", "License keys"),
    (
        "li",
        "License keys have the format LUMEN-XXXX-XXXX-XXXX and are entered under Admin > License.",
    ),
    ("li", "One key covers one production server plus one staging server."),
    ("li", "A key can be transferred to a new server once every 12 months via support."),
    (
        "li",
        "When a license expires, the server keeps working normally for a 21-day "
        "grace period and then switches to read-only mode until the license is "
        "renewed. No data is ever deleted because of an expired license.",
    ),
    ("h1", "Refunds"),
    ("h2", "Refund window"),
    (
        "p",
        "The refund window is 30 days from the date of purchase. Within those "
        "30 days you receive a full refund, no questions asked.",
    ),
    ("h2", "After 30 days"),
    (
        "p",
        "After the refund window closes, payments are not refundable, but you can "
        "cancel automatic renewal at any time and keep using the license until the "
        "end of the paid term.",
    ),
    ("h2", "How to request a refund"),
    (
        "p",
        "Email billing@lumen.example with your order number. Approved refunds are "
        "paid to the original payment method within 10 business days.",
    ),
    ("h1", "Contact"),
    ("p", "Licensing questions: sales@lumen.example. Billing: billing@lumen.example."),
]


# --------------------------------------------------------------------------
# PDF rendering (fpdf2, built-in Helvetica: Latin-1 text only)
# --------------------------------------------------------------------------


class RunbookPDF(FPDF):
    """A4 page with a small running header and page-number footer."""

    def __init__(self, doc_title: str) -> None:
        super().__init__(format="A4")
        self.doc_title = doc_title

    def header(self) -> None:
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(120, 120, 120)
        self.cell(0, 6, f"{self.doc_title} - INTERNAL", align="R")
        self.ln(10)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(120, 120, 120)
        self.cell(0, 10, f"Page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def write_pdf(path: Path, title: str, blocks: list[Block]) -> None:
    pdf = RunbookPDF(title)
    pdf.set_title(title)
    pdf.set_author("Lumen Labs")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(0, 10, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)

    for kind, text in blocks:
        if kind == "pagebreak":
            pdf.add_page()
        elif kind == "h1":
            pdf.ln(3)
            pdf.set_font("Helvetica", "B", 13)
            pdf.multi_cell(0, 8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        elif kind == "h2":
            pdf.ln(1)
            pdf.set_font("Helvetica", "B", 11)
            pdf.multi_cell(0, 7, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        elif kind == "p":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.multi_cell(0, 5.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1.5)
        elif kind == "li":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.set_x(pdf.l_margin + 4)
            pdf.multi_cell(0, 5.5, f"- {text}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(0.5)
        elif kind == "code":
            pdf.set_font("Courier", "", 9.5)
            pdf.set_fill_color(240, 240, 240)
            pdf.set_x(pdf.l_margin + 4)
            pdf.cell(0, 6, text, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(0.5)

    pdf.output(str(path))


# --------------------------------------------------------------------------
# DOCX rendering (python-docx, real Heading 1 / Heading 2 styles)
# --------------------------------------------------------------------------


def _normalize_zip(data: bytes) -> bytes:
    """Rewrite a zip archive with fixed entry timestamps so output is reproducible."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=(2026, 4, 6, 9, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, src.read(item.filename))
    return out.getvalue()


def write_docx(path: Path, title: str, blocks: list[Block]) -> None:
    doc = Document()
    props = doc.core_properties
    props.title = title
    props.author = "Lumen Labs"
    props.last_modified_by = "Lumen Labs"
    props.created = FIXED_DATE.replace(tzinfo=None)
    props.modified = FIXED_DATE.replace(tzinfo=None)
    props.revision = 1

    doc.add_heading(title, level=0)
    for kind, text in blocks:
        if kind == "h1":
            doc.add_heading(text, level=1)
        elif kind == "h2":
            doc.add_heading(text, level=2)
        elif kind == "p":
            doc.add_paragraph(text)
        elif kind == "li":
            doc.add_paragraph(text, style="List Bullet")
        elif kind == "code":
            doc.add_paragraph(text, style="No Spacing")
        elif kind == "pagebreak":
            doc.add_page_break()

    buf = io.BytesIO()
    doc.save(buf)
    path.write_bytes(_normalize_zip(buf.getvalue()))


def main() -> None:
    targets = {
        DOCS_DIR / "runbooks" / "oncall-runbook.pdf": (write_pdf, RUNBOOK_TITLE, RUNBOOK),
        DOCS_DIR / "policies" / "licensing-and-refunds.docx": (write_docx, POLICY_TITLE, POLICY),
    }
    for path, (writer, title, blocks) in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(path, title, blocks)
        print(f"wrote {path.relative_to(DOCS_DIR.parent)}")


if __name__ == "__main__":
    main()
