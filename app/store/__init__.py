"""The database boundary: connections and the driver's errors (``db``), login roles (``roles``), named
SQL (``sqlfiles``), the append-only event log (``event_log``), migrations, and the embedded cluster
(``embedded_pg``). Nothing here imports anything above it."""
