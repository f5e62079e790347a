"""Generic serving pieces that service.py wires together; nothing model-specific lives here."""
