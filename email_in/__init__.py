"""The email channel: replies over inbound SMTP, invitations through a relay, answer links."""
