import assert from "node:assert/strict";
import { Cutoff, FlowTable } from "../../src/flow/mod.ts";
import { FlowKind, KEY_WORDS } from "../../src/packet/packet_info.ts";

function tcpKey(sport: number, dport: number, src = 0xc6120001, dst = 0xc6120002): Uint32Array {
  const k = new Uint32Array(KEY_WORDS);
  k[0] = src;
  k[4] = dst;
  k[8] = (sport << 16) | dport;
  k[9] = (FlowKind.Ipv4 << 28) | (6 << 16);
  return k;
}

Deno.test("packet cutoff K stores exactly the first K packets", () => {
  const c = new Cutoff({ packets: 3 });
  assert.deepEqual([0, 1, 2, 3, 4, 100].map((n) => c.allows(n, 0)), [
    true,
    true,
    true,
    false,
    false,
    false,
  ]);
  const one = new Cutoff({ packets: 1 });
  assert.equal(one.allows(0, 1e12), true);
  assert.equal(one.allows(1, 0), false);
});

Deno.test("byte cutoff: the packet that crosses it is stored whole, the next is not", () => {
  const c = new Cutoff({ bytes: 1000 });
  assert.equal(c.allows(0, 0), true);
  assert.equal(c.allows(5, 999), true); // crosses 1000 with any length: stored
  assert.equal(c.allows(5, 1000), false); // already at the cutoff: not stored
  assert.equal(c.allows(5, 1001), false);
});

Deno.test("both cutoffs: whichever is reached first stops storing", () => {
  const c = new Cutoff({ bytes: 1000, packets: 10 });
  assert.equal(c.allows(9, 999), true);
  assert.equal(c.allows(10, 0), false);
  assert.equal(c.allows(0, 1000), false);
});

Deno.test("0 means unlimited", () => {
  const c = new Cutoff({ bytes: 0, packets: 0 });
  assert.equal(c.unlimited, true);
  assert.equal(c.allows(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER), true);
  assert.equal(new Cutoff().unlimited, true);
  const bytesOnly = new Cutoff({ bytes: 10 });
  assert.equal(bytesOnly.unlimited, false);
  assert.equal(bytesOnly.allows(1e9, 9), true);
  assert.equal(new Cutoff({ packets: 5 }).allows(4, 1e15), true);
});

Deno.test("invalid cutoffs are rejected with a clear message", () => {
  assert.throws(
    () => new Cutoff({ bytes: -1 }),
    /^RangeError: Invalid byte cutoff -1: expected a non-negative integer \(0 = unlimited\)$/,
  );
  assert.throws(() => new Cutoff({ packets: 1.5 }), /Invalid packet cutoff 1.5/);
  assert.throws(() => new Cutoff({ packets: NaN }), /Invalid packet cutoff NaN/);
  assert.throws(() => new Cutoff({ bytes: Infinity }), /Invalid byte cutoff Infinity/);
});

Deno.test("with the flow table: both directions count, wire lengths count, unstored packets count", () => {
  const table = new FlowTable({ seed: 1 });
  const cutoff = new Cutoff({ bytes: 2000 });
  const c2s = tcpKey(40000, 80);
  const s2c = tcpKey(80, 40000, 0xc6120002, 0xc6120001);
  // [direction, wire length] — e.g. a 1514-byte frame captured with snaplen 96 still counts 1514.
  const packets: [Uint32Array, number][] = [
    [c2s, 74], // 0 before -> stored
    [s2c, 74], // 74 -> stored
    [c2s, 66], // 148 -> stored
    [s2c, 1514], // 214 -> stored
    [s2c, 1514], // 1728 -> stored, crosses 2000
    [c2s, 66], // 3242 -> not stored
    [s2c, 1514], // 3308 -> not stored
  ];
  const stored = packets.map(([key, len], i) => {
    table.observe(key, 1 + i / 1000, len, 0x10);
    return cutoff.allows(table.packetsBefore, table.bytesBefore);
  });
  assert.deepEqual(stored, [true, true, true, true, true, false, false]);
  assert.equal(table.active, 1);

  // Packet cutoff over a bidirectional flow: exactly the first K packets, whatever direction.
  const t2 = new FlowTable({ seed: 2 });
  const k3 = new Cutoff({ packets: 3 });
  let kept = 0;
  for (let i = 0; i < 10; i++) {
    t2.observe(i % 2 === 0 ? c2s : s2c, 1 + i / 1000, 100, 0x10);
    if (k3.allows(t2.packetsBefore, t2.bytesBefore)) kept++;
  }
  assert.equal(kept, 3);

  // A new flow (port reuse after a RST) starts counting from zero again.
  const t3 = new FlowTable({ seed: 3 });
  const one = new Cutoff({ packets: 1 });
  t3.observe(c2s, 1, 74, 0x02);
  assert.equal(one.allows(t3.packetsBefore, t3.bytesBefore), true);
  t3.observe(s2c, 1.1, 60, 0x04);
  assert.equal(one.allows(t3.packetsBefore, t3.bytesBefore), false);
  t3.observe(c2s, 1.2, 74, 0x02);
  assert.equal(t3.isNew, true);
  assert.equal(one.allows(t3.packetsBefore, t3.bytesBefore), true);
});
