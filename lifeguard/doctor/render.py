"""Human output for a doctor report (``--json`` prints :meth:`Report.as_json` instead)."""

from __future__ import annotations

from lifeguard.doctor.findings import NOTHING_TO_CHANGE, Report


def render(report: Report) -> str:
    width = max(len(name) for name in report.urls) if report.urls else 0
    lines = ["lifeguard doctor"]
    lines += [f"  {name.ljust(width)}  {url}" for name, url in report.urls.items()]
    lines.append("")
    check_width = max((len(f.check) for f in report.findings), default=0)
    target_width = max((len(f.target) for f in report.findings), default=0)
    indent = " " * (4 + 2 + check_width + 2 + target_width + 2)
    for f in report.findings:
        status = f.status.value.upper()
        lines.append(f"{status:<4}  {f.check.ljust(check_width)}  {f.target.ljust(target_width)}  {f.summary}")
        if f.advice != NOTHING_TO_CHANGE:
            lines.append(f"{indent}-> {f.advice}")
    counts = report.counts()
    lines.append("")
    lines.append(
        f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail in {report.elapsed_s:.2f} s"
        + (" (exit 1: fix the failures)" if report.exit_code else "")
    )
    return "\n".join(lines)
