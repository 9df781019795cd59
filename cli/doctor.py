"""`kb doctor`: check the setup end to end, one line per check, and the fix for each failure."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from cli.errors import ExitCode
from cli.options import ConfigOpt, JsonOpt, KbOpt, load
from cli.output import Output

if TYPE_CHECKING:
    from core.results import DoctorReport


def doctor_command(config: ConfigOpt = None, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Check the setup: settings files, embedder, knowledge base, its lock, LLM, disk space.

    Exits 0 when every check passes, 8 when one fails (each failure prints its fix).

    Example: kb doctor --kb work
    """
    from core.doctor import diagnose, unreadable_settings
    from core.errors import ConfigError

    try:
        report = diagnose(load(config, kb))
    except ConfigError as err:
        report = unreadable_settings(err)
    render_doctor(Output(as_json=as_json), report)
    if not report.ok:
        raise typer.Exit(ExitCode.CHECKS_FAILED)


def render_doctor(out: Output, report: DoctorReport) -> None:
    """One line per check: a mark, the check, what was found; the fix under a failure."""
    if out.as_json:
        checks = [asdict(check) for check in report.checks]
        out.json({"kb": report.kb, "kb_dir": report.kb_dir, "ok": report.ok, "checks": checks})
        return
    from rich.markup import escape

    for check in report.checks:
        if out.fancy:
            mark = "[green]✓[/]" if check.ok else "[bold red]✗[/]"
            out.out.print(f"{mark} {check.name}: {escape(check.detail)}", soft_wrap=True)
            if not check.ok and check.fix:
                out.out.print(f"    [dim]fix:[/] {escape(check.fix)}", soft_wrap=True)
        else:
            out.write(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
            if not check.ok and check.fix:
                out.write(f"     fix: {check.fix}")
    failed = sum(not check.ok for check in report.checks)
    out.note(f"{failed} of {len(report.checks)} checks failed" if failed else "all checks passed")
