import asyncio, random
from app import event_log
from app.event_log import START
from test_event_log import _event
Q = """SELECT position, tx_id::text AS tx_id, pg_snapshot_xmin(pg_current_snapshot())::text as xmin, pg_current_snapshot()::text as snap
FROM bunsync.event_log
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, position
LIMIT $3"""
async def test_dbg(pool):
    rng = random.Random(7)
    log = []
    seen = {}
    done = False
    async def tail():
        cp = (0, 0)
        while True:
            async with pool.acquire() as conn:
                page = await conn.fetch(Q, str(cp[0]), cp[1], 7)
            for e in page:
                seen[e["position"]] = (int(e["tx_id"]), cp, e["snap"])
                cp = (int(e["tx_id"]), e["position"])
            if done and not page:
                break
            if not page:
                await asyncio.sleep(0.005)
    async def writer(w):
        for i in range(40):
            async with pool.acquire() as conn, conn.transaction():
                await event_log.append(conn, [_event(f"w{w}-{i}")])
                if rng.random() < 0.2:
                    await asyncio.sleep(rng.uniform(0.01, 0.15))
    t = asyncio.create_task(tail())
    await asyncio.gather(*(writer(w) for w in range(12)))
    done = True
    await t
    async with pool.acquire() as conn:
        allrows = [(r["position"], int(r["tx_id"])) for r in await conn.fetch("select position, tx_id::text as tx_id from bunsync.event_log order by tx_id, position")]
    missing = [(p, tx) for p, tx in allrows if p not in seen]
    print("missing", len(missing), missing[:10])
    if missing:
        tx = missing[0][1]
        near = sorted((v[0], p, v[1], v[2]) for p, v in seen.items() if abs(v[0]-tx) < 4)
        for n in near: print("near", n)
    assert not missing
