-- reporting.erasures: one row per order whose buyer personal data bunsync erased (never a value).
CREATE OR REPLACE VIEW reporting.erasures AS
SELECT e.order_id, e.erased_at, e.reason
FROM bunsync.erasures AS e;

COMMENT ON VIEW reporting.erasures IS
    'One row per order whose buyer personal data (name, phone, address) was erased: order_id; '
    'erased_at: when; reason: retention (BUNSYNC_PII_RETENTION_DAYS after its last item reached a '
    'final status) or request (bunsync forget --order). Later observations of the order keep no '
    'personal data.';

GRANT SELECT ON reporting.erasures TO bunsync_reporting, bunsync_service;
