"""What a manager is told: one notice (alert facts + why it is sent) rendered as text, markdown, HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

PURPOSE_TITLE = {
    "alert": "Alert",
    "escalation": "OVERDUE alert escalated",
    "retraction": "Alert withdrawn",
}
SEVERITY_MARK = {"yellow": "🟡", "red": "🔴"}


@dataclass(frozen=True, slots=True)
class Notice:
    """One delivery's content: ``payload`` is what the delivery log keeps (JSON)."""

    delivery_id: int
    route: str
    purpose: str
    payload: dict[str, Any]

    @property
    def severity(self) -> str:
        return str(self.payload.get("severity", "yellow"))

    @property
    def title(self) -> str:
        p = self.payload
        return f"[fleetwatch] {PURPOSE_TITLE[self.purpose]}: {p['type']} {p['vehicle_id']} ({p['org']})"

    def facts(self) -> list[tuple[str, str]]:
        p = self.payload
        rows = [
            ("alert", str(p["alert_id"])),
            ("type", str(p["type"])),
            ("severity", f"{SEVERITY_MARK.get(self.severity, '')} {self.severity}"),
            ("vehicle", str(p["vehicle_id"])),
            ("org", str(p["org"])),
            ("start", str(p.get("start") or "-")),
            ("end", str(p.get("end") or "(ongoing)")),
            ("position (WGS-84)", f"{p.get('lat')}, {p.get('lon')}"),
            ("raised", str(p.get("raised_at") or "-")),
            ("due", str(p.get("due") or "-")),
        ]
        if self.purpose == "escalation":
            rows.append(("escalated to", str(p.get("escalated_to", "-"))))
        if self.purpose == "retraction" and p.get("retract_reason"):
            rows.append(("reason", str(p["retract_reason"])))
        return rows

    def text(self) -> str:
        return "\n".join([self.title, "", *(f"{k}: {v}" for k, v in self.facts())]) + "\n"

    def markdown(self) -> str:
        lines = [f"### {self.title}", *(f"- **{k}**: {v}" for k, v in self.facts())]
        return "\n".join(lines)

    def html(self) -> str:
        colour = "#d93025" if self.severity == "red" else "#e0a800"
        rows = "".join(
            f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self.facts()
        )
        return (
            f"<html><body><h3 style='color:{colour}'>{html.escape(self.title)}</h3>"
            f"<table>{rows}</table></body></html>"
        )

    def document(self) -> dict[str, Any]:
        """The JSON a webhook or the MQTT app receives."""
        return {
            "v": 1,
            "delivery_id": self.delivery_id,
            "route": self.route,
            "purpose": self.purpose,
            "alert": self.payload,
        }
