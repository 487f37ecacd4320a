import assert from "node:assert/strict";
import {
  FLOW_SIZE_BUCKETS,
  FLOW_SIZE_COUNT,
  FLOW_SIZE_OVERFLOW,
  FLOW_SIZE_SUM,
  FlowSizeHistogram,
} from "../../src/flow/mod.ts";

Deno.test("buckets are gotm's: 1 KiB x 4^i, 15 of them", () => {
  assert.equal(FLOW_SIZE_BUCKETS.length, 15);
  assert.equal(FLOW_SIZE_BUCKETS[0], 1024);
  assert.equal(FLOW_SIZE_BUCKETS[1], 4096);
  assert.equal(FLOW_SIZE_BUCKETS[14], 1024 * 4 ** 14);
  assert.equal(FLOW_SIZE_BUCKETS[14], 256 * 2 ** 30); // 256 GiB
});

Deno.test("bounds are inclusive (Prometheus le)", () => {
  const h = new FlowSizeHistogram();
  const cases: [number, number][] = [
    [0, 0],
    [1, 0],
    [1024, 0],
    [1025, 1],
    [4096, 1],
    [4097, 2],
    [65536, 3],
    [65537, 4],
    [1024 * 4 ** 14, 14],
    [1024 * 4 ** 14 + 1, FLOW_SIZE_OVERFLOW],
    [1e15, FLOW_SIZE_OVERFLOW],
  ];
  for (const [bytes, bucket] of cases) {
    h.reset();
    h.observe(bytes);
    const hit = [...h.values.subarray(0, FLOW_SIZE_OVERFLOW + 1)].findIndex((v) => v === 1);
    assert.equal(hit, bucket, `${bytes} bytes`);
  }
});

Deno.test("sum, count, cumulative and merge", () => {
  const h = new FlowSizeHistogram();
  for (const b of [100, 2000, 2000, 5000, 1e12]) h.observe(b);
  assert.equal(h.count, 5);
  assert.equal(h.sum, 100 + 2000 + 2000 + 5000 + 1e12);
  const cum = h.cumulative();
  assert.equal(cum.length, 16);
  assert.deepEqual([...cum.subarray(0, 4)], [1, 3, 4, 4]);
  assert.equal(cum[14], 4);
  assert.equal(cum[15], 5); // +Inf = count

  const total = new FlowSizeHistogram();
  total.merge(h.values);
  total.merge(h.values);
  assert.equal(total.values[FLOW_SIZE_COUNT], 10);
  assert.equal(total.values[FLOW_SIZE_SUM], 2 * h.sum);
  assert.throws(
    () => total.merge(new Float64Array(3)),
    /Invalid flow size histogram length 3: expected 18/,
  );
});
