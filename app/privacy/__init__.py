"""Buyer personal data: split out of Get Order answers (``personal_data``), erased on request or by
retention (``erasure``), taken out of pre-0007 log rows once (``redaction``), and proven gone from a
database dump (``dump_scan``)."""
