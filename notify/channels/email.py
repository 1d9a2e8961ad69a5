"""E-mail over SMTP: one message per notice to the route's managers, plain text plus HTML."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

from fleetwatch.settings import Settings
from notify.channels import DeliveryError
from notify.config import ChannelSpec, Route
from notify.message import Notice


@dataclass
class EmailChannel:
    spec: ChannelSpec
    settings: Settings

    def send(self, notice: Notice, route: Route) -> None:
        recipients = [m.email for m in route.managers if m.email]
        message = EmailMessage()
        message["Subject"] = notice.title
        message["From"] = self.settings.smtp_sender
        message["To"] = ", ".join(recipients)
        message["Message-ID"] = make_msgid(idstring=f"fw-delivery-{notice.delivery_id}")
        message["X-Fleetwatch-Delivery"] = str(notice.delivery_id)
        message.set_content(notice.text())
        message.add_alternative(notice.html(), subtype="html")
        s = self.settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.notify_http_timeout_seconds) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_user:
                    smtp.login(s.smtp_user, s.secret("smtp_password"))
                refused = smtp.send_message(message)
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from None
        if refused:
            raise DeliveryError(f"SMTP refused recipients: {sorted(refused)}")

    def close(self) -> None:
        pass
