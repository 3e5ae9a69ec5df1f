-- 0008: one bad order-level field no longer parks a whole Get Order observation (issue 9, section 3).
--
-- Fields of order.observed events that the orders projection could not use: a price out of bigint,
-- a string where an integer is expected, a time that is not ISO-8601 or is implausible (before 2000,
-- or after the event's recording plus the tolerated skew), a seller or delivery that is not an
-- object. The field is NULL in bunsync.orders, the rest of the observation counts. Owned by that
-- projection (listed in its tables, rebuilt with it, so a rebuild reproduces it exactly). The problem
-- text names the field and the kind of problem, never the value.
CREATE TABLE bunsync.order_anomalies (
    position    bigint      NOT NULL,  -- the order.observed event
    order_id    bigint      NOT NULL,
    field       text        NOT NULL,  -- its path under the answer's data, e.g. order.totalPrice
    problem     text        NOT NULL,
    recorded_at timestamptz NOT NULL,  -- the event's
    PRIMARY KEY (position, field)
);
CREATE INDEX order_anomalies_order_id_idx ON bunsync.order_anomalies (order_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON bunsync.order_anomalies TO bunsync_service;
