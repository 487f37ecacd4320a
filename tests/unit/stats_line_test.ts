import assert from "node:assert/strict";
import { snapshot, statsFields, type StatsSnapshot } from "../../src/sensor/stats_line.ts";
import { allocateCounters, Counter } from "../../src/worker/counters.ts";

Deno.test("stats lines: what the worker counts while a line is made shows in the next one", () => {
  const counters = allocateCounters();
  let previous: StatsSnapshot = snapshot(counters);
  let output = 0;
  let pkts = 0;
  for (let line = 0; line < 3; line++) {
    counters[Counter.PacketsSeen] += 100;
    counters[Counter.PacketsWritten] += 40;
    const now = snapshot(counters);
    // The worker goes on between reading the counters and the next line's start.
    counters[Counter.PacketsWritten] += 8;
    const fields = statsFields("eth0", 0, counters, { previous, now });
    previous = now;
    output += fields.output as number;
    pkts += fields.pkts as number;
  }
  const last = statsFields("eth0", 0, counters, { previous, now: snapshot(counters) });
  output += last.output as number;
  assert.equal(last.output, 8);
  assert.equal(output, counters[Counter.PacketsWritten], "the lines add up to the counter");
  assert.equal(pkts, 300);
});
