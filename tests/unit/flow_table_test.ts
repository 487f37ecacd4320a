import assert from "node:assert/strict";
import { FlowTable, RemoveReason } from "../../src/flow/mod.ts";
import { FlowKind, KEY_WORDS } from "../../src/packet/packet_info.ts";

const TCP = 6;
const UDP = 17;
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

function ipv4(text: string): number {
  return text.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

/** Parses an IPv6 address (with "::") into 4 big-endian words. */
function ipv6(text: string): number[] {
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = [
    ...left,
    ...Array(8 - left.length - right.length).fill("0"),
    ...right,
  ].map((g) => parseInt(g, 16));
  return [0, 1, 2, 3].map((i) => ((groups[2 * i] << 16) | groups[2 * i + 1]) >>> 0);
}

interface KeyOptions {
  proto?: number;
  vlan?: number;
}

/** Flow key in packet direction, laid out as packet_info.ts documents. */
function key4(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  options: KeyOptions = {},
): Uint32Array {
  const k = new Uint32Array(KEY_WORDS);
  k[0] = ipv4(src);
  k[4] = ipv4(dst);
  k[8] = (sport << 16) | dport;
  k[9] = (FlowKind.Ipv4 << 28) | ((options.proto ?? TCP) << 16) | (options.vlan ?? 0);
  return k;
}

function key6(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  options: KeyOptions = {},
): Uint32Array {
  const k = new Uint32Array(KEY_WORDS);
  k.set(ipv6(src), 0);
  k.set(ipv6(dst), 4);
  k[8] = (sport << 16) | dport;
  k[9] = (FlowKind.Ipv6 << 28) | ((options.proto ?? TCP) << 16) | (options.vlan ?? 0);
  return k;
}

interface Removal {
  id: number;
  reason: RemoveReason;
  serial: number;
  packets: number;
  bytes: number;
  key: number[];
}

/** A table whose removals are recorded with the flow's data as seen inside the hook. */
function recordingTable(
  options: ConstructorParameters<typeof FlowTable>[0] = {},
): { table: FlowTable; removals: Removal[] } {
  const removals: Removal[] = [];
  const out = new Uint32Array(KEY_WORDS);
  const table: FlowTable = new FlowTable({
    seed: 1,
    ...options,
    onRemove(id, reason) {
      assert.ok(table.isLive(id), "onRemove must see a live flow");
      table.copyKey(id, out);
      removals.push({
        id,
        reason,
        serial: table.serialOf(id),
        packets: table.packetsOf(id),
        bytes: table.bytesOf(id),
        key: [...out],
      });
    },
  });
  return { table, removals };
}

function assertInvariant(t: FlowTable): void {
  assert.equal(t.started, t.active + t.expiredIdle + t.closed + t.evicted + t.flushed);
}

Deno.test("both directions of a connection share one flow", () => {
  const t = new FlowTable({ seed: 1 });
  const ab = key4("198.18.0.1", "198.18.0.2", 40000, 80);
  const ba = key4("198.18.0.2", "198.18.0.1", 80, 40000);

  const id = t.observe(ab, 100, 74, SYN);
  assert.equal(t.isNew, true);
  assert.equal(t.reversed, false);
  assert.equal(t.packetsBefore, 0);
  assert.equal(t.bytesBefore, 0);

  assert.equal(t.observe(ba, 100.001, 74, SYN | ACK), id);
  assert.equal(t.isNew, false);
  assert.equal(t.reversed, true);
  assert.equal(t.packetsBefore, 1);
  assert.equal(t.bytesBefore, 74);

  assert.equal(t.observe(ab, 100.002, 1514, ACK), id);
  assert.equal(t.reversed, false);
  assert.equal(t.packetsBefore, 2);
  assert.equal(t.bytesBefore, 148);

  assert.equal(t.packetsOf(id), 3);
  assert.equal(t.bytesOf(id), 1662);
  assert.equal(t.lastTsOf(id), 100.002);
  assert.equal(t.active, 1);
  assert.equal(t.firstReversedOf(id), false);
});

Deno.test("canonical key puts the smaller (address, port) end first", () => {
  const t = new FlowTable({ seed: 1 });
  const out = new Uint32Array(KEY_WORDS);
  // Packet from the larger address: stored swapped, ports swapped with it.
  const id = t.observe(key4("198.18.0.9", "198.18.0.2", 53, 40000, { proto: UDP }), 1, 80, 0);
  assert.equal(t.reversed, true);
  assert.equal(t.firstReversedOf(id), true);
  t.copyKey(id, out);
  assert.deepEqual([...out], [...key4("198.18.0.2", "198.18.0.9", 40000, 53, { proto: UDP })]);

  // Same address both ends: the port decides.
  const same1 = t.observe(key4("198.18.0.1", "198.18.0.1", 9000, 80), 1, 60, 0);
  assert.equal(t.reversed, true);
  const same2 = t.observe(key4("198.18.0.1", "198.18.0.1", 80, 9000), 1, 60, 0);
  assert.equal(t.reversed, false);
  assert.equal(same1, same2);

  // Identical ends (a packet to itself): never reversed, one flow.
  const self1 = t.observe(key4("198.18.0.1", "198.18.0.1", 7, 7), 1, 60, 0);
  assert.equal(t.reversed, false);
  assert.equal(t.observe(key4("198.18.0.1", "198.18.0.1", 7, 7), 1, 60, 0), self1);
  assert.equal(t.reversed, false);
});

Deno.test("IPv6 keys: every address word counts, both directions share a flow", () => {
  const t = new FlowTable({ seed: 1 });
  const a = "2001:db8::1";
  const b = "2001:db8::2";
  const id = t.observe(key6(a, b, 5000, 443), 1, 90, SYN);
  assert.equal(t.isNew, true);
  // Differs only in the last word (low bits of the address): the comparison must look past word 0.
  assert.equal(t.observe(key6(b, a, 443, 5000), 1.1, 90, SYN | ACK), id);
  assert.equal(t.reversed, true);
  assert.equal(t.isNew, false);
  // A different address in word 1, 2 or 3 is a different flow.
  const others = [
    key6("2001:db8:0:1::1", b, 5000, 443),
    key6("2001:db8::1:0:0:1", b, 5000, 443),
    key6("2001:db8::1:1", b, 5000, 443),
  ];
  const ids = others.map((k) => t.observe(k, 1.2, 90, SYN));
  assert.equal(new Set([id, ...ids]).size, 4);
  // An IPv4 key with the same first words is not the IPv6 one (kind is in the key).
  const v4 = new Uint32Array(key6(a, b, 5000, 443));
  v4[9] = (FlowKind.Ipv4 << 28) | (TCP << 16);
  assert.notEqual(t.observe(v4, 1.3, 60, SYN), id);
  assert.equal(t.active, 5);
});

Deno.test("VLAN and protocol separate otherwise identical flows", () => {
  const t = new FlowTable({ seed: 1 });
  const untagged = t.observe(key4("198.18.0.1", "198.18.0.2", 1000, 53, { proto: UDP }), 1, 80, 0);
  const vlan10 = t.observe(
    key4("198.18.0.1", "198.18.0.2", 1000, 53, { proto: UDP, vlan: 10 }),
    1,
    80,
    0,
  );
  const vlan11 = t.observe(
    key4("198.18.0.2", "198.18.0.1", 53, 1000, { proto: UDP, vlan: 11 }),
    1,
    80,
    0,
  );
  const tcp = t.observe(key4("198.18.0.1", "198.18.0.2", 1000, 53), 1, 80, 0);
  assert.equal(new Set([untagged, vlan10, vlan11, tcp]).size, 4);
  // The reply on VLAN 10 joins VLAN 10's flow.
  assert.equal(
    t.observe(key4("198.18.0.2", "198.18.0.1", 53, 1000, { proto: UDP, vlan: 10 }), 1, 80, 0),
    vlan10,
  );
});

Deno.test("idle expiry runs on packet time, lazily and by the sweep", () => {
  const { table: t, removals } = recordingTable({ flowTimeout: 4 });
  const x = key4("198.18.0.1", "198.18.0.2", 1111, 80, { proto: UDP });
  const y = key4("198.18.0.3", "198.18.0.4", 2222, 80, { proto: UDP });
  // Timestamps far from "now": nothing may consult the wall clock.
  const t0 = 1_000_000;
  const xid = t.observe(x, t0, 100, 0);
  const xSerial = t.serialOf(xid);
  let removedAt = -1;
  t.onRemove = (id, reason) => {
    assert.equal(id, xid);
    assert.equal(reason, RemoveReason.Idle);
    assert.equal(t.packetsOf(id), 1);
    removedAt = now;
  };
  let now = t0;
  for (let i = 1; i <= 20; i++) {
    now = t0 + i * 0.5;
    t.observe(y, now, 100, 0);
  }
  // Sweep interval = min(1, timeout / 4) = 1 s: removed at the first pass after idle > 4 s.
  assert.ok(removedAt > t0 + 4 && removedAt <= t0 + 5.01, `removed at +${removedAt - t0}`);
  assert.equal(t.expiredIdle, 1);
  assert.equal(t.active, 1);
  assert.equal(removals.length, 0);

  // Exactly flowTimeout idle is still the same flow; beyond it a new one.
  t.onRemove = undefined;
  const zkey = key4("198.18.0.5", "198.18.0.6", 3333, 80, { proto: UDP });
  const z = t.observe(zkey, t0 + 100, 10, 0);
  const zSerial = t.serialOf(z);
  assert.equal(t.observe(zkey, t0 + 104, 10, 0), z);
  assert.equal(t.isNew, false);
  const z2 = t.observe(zkey, t0 + 108.001, 10, 0);
  assert.equal(t.isNew, true);
  assert.equal(t.packetsBefore, 0);
  assert.ok(t.serialOf(z2) > zSerial);
  assert.ok(zSerial > xSerial);
  assertInvariant(t);
});

Deno.test("expireIdle(now) expires without packets, expireAll flushes everything", () => {
  const { table: t, removals } = recordingTable({ flowTimeout: 10 });
  for (let i = 0; i < 50; i++) {
    t.observe(key4("198.18.1.1", "198.18.2.2", 1000 + i, 80), 100 + i / 8, 100 + i, ACK);
  }
  // At 114.3: flows last seen up to 104.25 (i < 35) are idle > 10 s, the rest are not.
  assert.equal(t.expireIdle(114.3), 35);
  assert.equal(removals.length, 35);
  assert.ok(removals.every((r) => r.reason === RemoveReason.Idle));
  assert.deepEqual(
    removals.map((r) => r.key[8] >>> 16).sort((a, b) => a - b),
    Array.from({ length: 35 }, (_, i) => 1000 + i),
  );
  assert.equal(t.active, 15);
  assert.equal(t.expireAll(), 15);
  assert.equal(t.active, 0);
  assert.equal(t.flushed, 15);
  assert.equal(removals.filter((r) => r.reason === RemoveReason.Shutdown).length, 15);
  // Every removal recorded its bytes in the histogram.
  assert.equal(t.sizes.count, 50);
  assert.equal(t.sizes.sum, removals.reduce((s, r) => s + r.bytes, 0));
  assert.equal(t.sizes.sum, Array.from({ length: 50 }, (_, i) => 100 + i).reduce((a, b) => a + b));
  assertInvariant(t);
  // The table is usable after a flush.
  t.observe(key4("198.18.1.1", "198.18.2.2", 1, 2), 200, 60, SYN);
  assert.equal(t.isNew, true);
  assert.equal(t.active, 1);
});

Deno.test("FIN from both sides closes; the last ACK lingers in the flow; then it is removed", () => {
  const { table: t, removals } = recordingTable({ closeLinger: 5 });
  const c = key4("198.18.0.1", "198.18.0.2", 40000, 80);
  const s = key4("198.18.0.2", "198.18.0.1", 80, 40000);
  const id = t.observe(c, 10, 74, SYN);
  t.observe(s, 10.1, 74, SYN | ACK);
  t.observe(c, 10.2, 66, ACK);
  t.observe(c, 11, 66, FIN | ACK);
  assert.equal(t.closedOf(id), false, "one FIN is a half close");
  t.observe(c, 11.1, 66, FIN | ACK); // retransmitted FIN from the same side
  assert.equal(t.closedOf(id), false);
  t.observe(s, 11.2, 66, FIN | ACK);
  assert.equal(t.closedOf(id), true);
  // Final ACK inside the linger window: same flow.
  assert.equal(t.observe(c, 11.3, 66, ACK), id);
  assert.equal(t.isNew, false);
  assert.equal(t.packetsBefore, 6);
  assert.equal(removals.length, 0);
  // Other traffic moves packet time on; the sweep removes the closed flow after 5 s idle,
  // long before the 300 s idle timeout.
  const other = key4("198.18.9.9", "198.18.9.8", 1, 2, { proto: UDP });
  for (let ts = 12; ts <= 18; ts += 0.25) t.observe(other, ts, 60, 0);
  assert.equal(removals.length, 1);
  assert.equal(removals[0].id, id);
  assert.equal(removals[0].reason, RemoveReason.Closed);
  assert.equal(removals[0].packets, 7);
  assert.equal(t.closed, 1);
  assertInvariant(t);
});

Deno.test("RST closes; SYN after close starts a new flow with a new serial (port reuse)", () => {
  const { table: t, removals } = recordingTable({ closeLinger: 5 });
  const c = key4("198.18.0.1", "198.18.0.2", 40000, 80);
  const s = key4("198.18.0.2", "198.18.0.1", 80, 40000);
  const id = t.observe(c, 10, 74, SYN);
  const serial = t.serialOf(id);
  t.observe(s, 10.1, 60, RST | ACK);
  assert.equal(t.closedOf(id), true);
  // A non-SYN packet and a SYN+ACK in the linger window still count to the old flow.
  assert.equal(t.observe(s, 10.2, 60, RST), id);
  assert.equal(t.observe(s, 10.3, 60, SYN | ACK), id);
  assert.equal(t.isNew, false);
  // A bare SYN reuses the ports: the old flow is removed (Closed) first, then a new one starts.
  const id2 = t.observe(c, 10.5, 74, SYN);
  assert.equal(t.isNew, true);
  assert.equal(t.packetsBefore, 0);
  assert.equal(t.bytesBefore, 0);
  assert.ok(t.serialOf(id2) > serial);
  assert.equal(t.closedOf(id2), false);
  assert.equal(t.packetsOf(id2), 1);
  assert.equal(removals.length, 1);
  assert.deepEqual(
    { id: removals[0].id, reason: removals[0].reason, serial: removals[0].serial },
    { id, reason: RemoveReason.Closed, serial },
  );
  assert.equal(removals[0].packets, 4);
  // The freed id is reused only after the hook ran.
  assert.equal(id2, id);
  assertInvariant(t);
});

Deno.test("closed flow idle past the linger: any next packet starts a new flow", () => {
  const t = new FlowTable({ seed: 1, closeLinger: 2 });
  const c = key4("198.18.0.1", "198.18.0.2", 40000, 80);
  const id = t.observe(c, 10, 60, RST);
  const serial = t.serialOf(id);
  t.observe(c, 12, 60, ACK); // idle exactly 2: still lingering
  assert.equal(t.isNew, false);
  t.observe(c, 14.5, 60, ACK);
  assert.equal(t.isNew, true);
  assert.ok(t.serialOf(t.observe(c, 14.6, 60, ACK)) > serial);
});

Deno.test("TCP flags are ignored for non-TCP flows", () => {
  const t = new FlowTable({ seed: 1 });
  const u = key4("198.18.0.1", "198.18.0.2", 1, 2, { proto: UDP });
  const id = t.observe(u, 1, 60, RST | FIN);
  t.observe(u, 1, 60, FIN);
  assert.equal(t.closedOf(id), false);
  t.observe(u, 1.1, 60, SYN);
  assert.equal(t.isNew, false);
});

Deno.test("timestamps going back do not move lastTs back", () => {
  const t = new FlowTable({ seed: 1 });
  const k = key4("198.18.0.1", "198.18.0.2", 1, 2);
  const id = t.observe(k, 10, 60, 0);
  t.observe(k, 9.5, 60, 0);
  assert.equal(t.lastTsOf(id), 10);
  assert.equal(t.packetsOf(id), 2);
});

Deno.test("maxFlows: a new flow evicts an old one (sampled LRU) and calls onRemove first", () => {
  const maxFlows = 1000;
  const { table: t, removals } = recordingTable({ maxFlows, initialCapacity: 16 });
  // Flow i last seen at time i ms (all well within the idle timeout).
  for (let i = 0; i < maxFlows; i++) {
    t.observe(key4("198.18.0.1", "198.19.0.1", i, 80), i / 1000, 100, 0);
  }
  assert.equal(t.active, maxFlows);
  const reused: number[] = [];
  for (let j = 0; j < 200; j++) {
    const id = t.observe(key4("198.18.0.2", "198.19.0.2", j, 80), 1 + j / 1000, 100, 0);
    assert.equal(t.isNew, true);
    assert.equal(t.active, maxFlows);
    reused.push(id);
  }
  assert.equal(t.evicted, 200);
  assert.equal(removals.length, 200);
  assert.ok(removals.every((r) => r.reason === RemoveReason.Evicted));
  // Each new flow took the id its victim released, after the hook saw the victim.
  assert.deepEqual(reused, removals.map((r) => r.id));
  // Victims are old flows: with 8 samples the victim's age rank averages ~1/9 of the table.
  // Victims are all from the first generation, and the first generation's port = its time.
  assert.ok(removals.every((r) => r.key[4] === ipv4("198.19.0.1")));
  const ranks = removals.map((r) => (r.key[8] >>> 16) / maxFlows);
  const mean = ranks.reduce((a, b) => a + b, 0) / ranks.length;
  assert.ok(mean < 0.25, `mean victim rank ${mean}`);
  assert.ok(Math.max(...ranks) < 0.8, `worst victim rank ${Math.max(...ranks)}`);
  assertInvariant(t);
});

Deno.test("maxFlows = 1 still works", () => {
  const t = new FlowTable({ seed: 1, maxFlows: 1, initialCapacity: 1 });
  const a = t.observe(key4("198.18.0.1", "198.18.0.2", 1, 2), 1, 60, 0);
  const b = t.observe(key4("198.18.0.1", "198.18.0.2", 3, 4), 2, 60, 0);
  assert.equal(a, b);
  assert.equal(t.evicted, 1);
  assert.equal(t.active, 1);
});

Deno.test("serials are unique and increase; ids are dense and reused", () => {
  const t = new FlowTable({ seed: 1, flowTimeout: 1 });
  const serials = new Set<number>();
  let last = 0;
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 100; i++) {
      const id = t.observe(key4("198.18.0.1", "198.18.0.2", i, 80), round * 10 + i * 0.001, 1, 0);
      assert.ok(id < 100, "ids are reused, not ever growing");
      const s = t.serialOf(id);
      assert.ok(s > last);
      last = s;
      serials.add(s);
    }
  }
  assert.equal(serials.size, 500);
  assert.equal(t.idLimit, 100);
});

Deno.test("constructor validates its options", () => {
  assert.throws(() => new FlowTable({ maxFlows: 0 }), /Invalid maxFlows 0: expected an integer/);
  assert.throws(() => new FlowTable({ maxFlows: 1.5 }), /Invalid maxFlows/);
  assert.throws(
    () => new FlowTable({ flowTimeout: 0 }),
    /Invalid flowTimeout 0: expected seconds > 0/,
  );
  assert.throws(() => new FlowTable({ flowTimeout: NaN }), /Invalid flowTimeout/);
  assert.throws(() => new FlowTable({ closeLinger: -1 }), /Invalid closeLinger -1/);
  assert.throws(() => new FlowTable({ initialCapacity: 0 }), /Invalid initialCapacity 0/);
});

Deno.test("reserving 1M flows is cheap until used", () => {
  const t = new FlowTable({ maxFlows: 1_000_000, initialCapacity: 1024 });
  assert.equal(t.capacity, 1024);
  t.observe(key4("198.18.0.1", "198.18.0.2", 1, 2), 1, 60, 0);
  // 1 record in use plus a 2048-slot index.
  assert.ok(t.memoryBytes < 64 * 1024, `memoryBytes ${t.memoryBytes}`);
});

// ---------------------------------------------------------------------------------------------
// Property test: the table against a straightforward Map<string, ...> model.

interface RefFlow {
  id: number;
  serial: number;
  packets: number;
  bytes: number;
  lastTs: number;
  finA: boolean;
  finB: boolean;
  closed: boolean;
}

/** Canonical string key and direction, computed independently of the table's code. */
function refKey(k: Uint32Array): { key: string; reversed: boolean } {
  const a = [k[0], k[1], k[2], k[3], k[8] >>> 16];
  const b = [k[4], k[5], k[6], k[7], k[8] & 0xffff];
  let reversed = false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      reversed = a[i] > b[i];
      break;
    }
  }
  const [lo, hi] = reversed ? [b, a] : [a, b];
  return { key: `${lo.join(".")}|${hi.join(".")}|${k[9]}`, reversed };
}

/** xorshift32, so a failure reproduces. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

Deno.test("property: 200k random packets match a Map model through growth, expiry and closes", () => {
  const random = rng(0x5eed);
  const timeout = 30;
  const linger = 2;
  // Endpoint pairs: IPv4 and IPv6, TCP/UDP/ICMP, some on VLANs, some sharing addresses.
  const pool: Uint32Array[] = [];
  for (let i = 0; i < 20_000; i++) {
    const k = new Uint32Array(KEY_WORDS);
    const six = random() < 0.3;
    const proto = random() < 0.6 ? TCP : random() < 0.8 ? UDP : 1;
    k[0] = six ? 0x20010db8 : 0xc6120000 | Math.floor(random() * 64);
    k[4] = six ? 0x20010db8 : 0xc6120000 | Math.floor(random() * 64);
    if (six) {
      k[3] = Math.floor(random() * 64);
      k[7] = Math.floor(random() * 64);
    }
    k[8] = proto === 1 ? 0 : (Math.floor(random() * 8) << 16) | Math.floor(random() * 8);
    const vlan = random() < 0.1 ? 1 + Math.floor(random() * 3) : 0;
    k[9] = ((six ? FlowKind.Ipv6 : FlowKind.Ipv4) << 28) | (proto << 16) | vlan;
    pool.push(k);
  }

  const ref = new Map<string, RefFlow>();
  let now = 0;
  let synOnly = "";
  let lastSerial = 0;
  const out = new Uint32Array(KEY_WORDS);
  const t: FlowTable = new FlowTable({
    seed: 7,
    flowTimeout: timeout,
    closeLinger: linger,
    initialCapacity: 8,
    onRemove(id, reason) {
      t.copyKey(id, out);
      const { key } = refKey(out);
      const e = ref.get(key);
      assert.ok(e !== undefined, `removed flow ${key} is not in the model`);
      assert.equal(e.id, id);
      assert.equal(t.packetsOf(id), e.packets);
      assert.equal(t.bytesOf(id), e.bytes);
      const idle = now - e.lastTs;
      if (reason === RemoveReason.Idle) assert.ok(idle > timeout, `idle ${idle}`);
      else if (reason === RemoveReason.Closed) {
        assert.ok(e.closed && (idle > linger || synOnly === key), `closed removal of ${key}`);
      } else assert.equal(reason, RemoveReason.Shutdown);
      ref.delete(key);
    },
  });

  const scratch = new Uint32Array(KEY_WORDS);
  for (let op = 0; op < 200_000; op++) {
    // Time: mostly small steps, sometimes a jump past the timeout, sometimes a little back.
    const r = random();
    now += r < 0.0005 ? 40 * random() : r < 0.01 ? -0.004 * random() : 0.004 * random();
    if (random() < 0.0002) {
      t.expireIdle(now);
      for (const e of ref.values()) {
        assert.ok(now - e.lastTs <= timeout, "expireIdle left an idle flow");
        assert.ok(!e.closed || now - e.lastTs <= linger, "expireIdle left a closed flow");
      }
      continue;
    }
    // Skewed choice of flow: a few hot ones, a long tail.
    const pick = random() < 0.3 ? Math.floor(random() * 50) : Math.floor(random() * pool.length);
    const base = pool[pick];
    scratch.set(base);
    if (random() < 0.5) {
      scratch.set(base.subarray(4, 8), 0);
      scratch.set(base.subarray(0, 4), 4);
      scratch[8] = ((base[8] & 0xffff) << 16) | (base[8] >>> 16);
    }
    const proto = (scratch[9] >>> 16) & 0xff;
    const f = random();
    const flags = proto !== TCP
      ? 0
      : f < 0.01
      ? RST
      : f < 0.04
      ? FIN | ACK
      : f < 0.07
      ? SYN
      : f < 0.08
      ? SYN | ACK
      : ACK;
    const len = 60 + Math.floor(random() * 1455);

    const { key, reversed } = refKey(scratch);
    const before = ref.get(key);
    const tcpSyn = proto === TCP && (flags & (SYN | ACK)) === SYN;
    const expectNew = before === undefined || now - before.lastTs > timeout ||
      (before.closed && (now - before.lastTs > linger || tcpSyn));
    synOnly = tcpSyn ? key : "";

    const id = t.observe(scratch, now, len, flags);

    assert.equal(t.isNew, expectNew, `op ${op}: isNew`);
    assert.equal(t.reversed, reversed);
    let e: RefFlow;
    if (expectNew) {
      assert.equal(t.packetsBefore, 0);
      assert.equal(t.bytesBefore, 0);
      assert.ok(t.serialOf(id) > lastSerial);
      lastSerial = t.serialOf(id);
      e = {
        id,
        serial: lastSerial,
        packets: 1,
        bytes: len,
        lastTs: now,
        finA: false,
        finB: false,
        closed: false,
      };
      ref.set(key, e);
    } else {
      e = before!;
      assert.equal(id, e.id, `op ${op}: id`);
      assert.equal(t.packetsBefore, e.packets);
      assert.equal(t.bytesBefore, e.bytes);
      assert.equal(t.serialOf(id), e.serial);
      e.packets++;
      e.bytes += len;
      e.lastTs = Math.max(e.lastTs, now);
    }
    if (proto === TCP) {
      if (flags & RST) e.closed = true;
      if (flags & FIN) {
        if (reversed) e.finB = true;
        else e.finA = true;
        if (e.finA && e.finB) e.closed = true;
      }
    }
    assert.equal(t.closedOf(id), e.closed);
    assert.equal(t.packetsOf(id), e.packets);
    assert.equal(t.lastTsOf(id), e.lastTs);
    // Every removal went through onRemove, so the live counts agree at all times.
    assert.equal(t.active, ref.size, `op ${op}: active`);
  }

  // Ids of live flows are distinct, and each model flow is findable under its canonical key.
  const ids = new Set<number>();
  for (const e of ref.values()) {
    assert.ok(t.isLive(e.id));
    ids.add(e.id);
  }
  assert.equal(ids.size, ref.size);
  assert.ok(t.capacity >= 1024, `the index grew (capacity ${t.capacity})`);
  assert.ok(t.expiredIdle > 1000 && t.closed > 1000, `${t.expiredIdle} idle, ${t.closed} closed`);

  now += 1;
  const flushed = t.expireAll();
  assert.equal(flushed, t.flushed);
  assert.equal(ref.size, 0);
  assert.equal(t.active, 0);
  assert.equal(t.sizes.count, t.started);
  assertInvariant(t);
});
