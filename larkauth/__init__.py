"""larkauth core: the Feishu client, cards, errors, redaction and the sandbox. No Django models."""
