"""Events for webhooks: rendered from the outbox (``payloads``), delivered and signed (``delivery``)."""
