import assert from "node:assert/strict";
import { parseAddress, type Words } from "../src/query/address.ts";
import { formatQuery, type Query } from "../src/query/ast.ts";
import {
  type FlowRecordRef,
  flowTruth,
  needsPacketTimes,
  packetMatches,
  queryToBpf,
  timeBounds,
  Truth,
} from "../src/query/match.ts";
import { parseQuery } from "../src/query/parse.ts";
import type { FileIndex } from "../src/index/index_reader.ts";
import { prng } from "./support/prng.ts";

const NOW = 1_800_000_000;
const KEY_WORDS = 10;

interface KeySpec {
  kind: 0 | 1 | 4 | 6;
  a?: string;
  b?: string;
  portA?: number;
  portB?: number;
  proto?: number;
  vlan?: number;
  /** A port protocol's packet without ports (later fragment, cut-off header): meta bit 12. */
  noPorts?: boolean;
}

function words(text: string | undefined): Words {
  if (text === undefined) return [0, 0, 0, 0];
  const a = parseAddress(text);
  if (a === null) throw new Error(`Bad test address ${text}`);
  return a.words;
}

/** A flow key in the layout of src/packet/packet_info.ts. */
function makeKey(s: KeySpec): Uint32Array {
  const key = new Uint32Array(KEY_WORDS);
  key.set(words(s.a), 0);
  key.set(words(s.b), 4);
  key[8] = (((s.portA ?? 0) << 16) | (s.portB ?? 0)) >>> 0;
  key[9] = ((s.kind << 28) | ((s.proto ?? 0) << 16) | (s.noPorts ? 0x1000 : 0) | (s.vlan ?? 0)) >>>
    0;
  return key;
}

function q(text: string): Query {
  return parseQuery(text, { now: NOW });
}

function matches(text: string, spec: KeySpec, ts = NOW): boolean {
  return packetMatches(q(text), makeKey(spec), 0, ts);
}

const TCP4: KeySpec = {
  kind: 4,
  a: "198.18.0.1",
  b: "198.18.0.2",
  portA: 40000,
  portB: 80,
  proto: 6,
};
const UDP6: KeySpec = {
  kind: 6,
  a: "2001:db8::1",
  b: "2001:db8:0:1::5",
  portA: 53,
  portB: 5353,
  proto: 17,
};

Deno.test("match: host and ip= compare either end, family exact", () => {
  for (const text of ["host 198.18.0.1", "host 198.18.0.2", "ip=198.18.0.1", "ip=198.18.0.2"]) {
    assert.ok(matches(text, TCP4), text);
  }
  assert.ok(!matches("host 198.18.0.3", TCP4));
  assert.ok(matches("host 2001:db8::1", UDP6));
  assert.ok(matches("ip=2001:db8:0:1::5", UDP6));
  assert.ok(!matches("host 2001:db8::2", UDP6));
  // Same word-0 bits, other family or L2: never an address match.
  assert.ok(!matches("host 198.18.0.1", { ...TCP4, kind: 6 }));
  assert.ok(!matches("host 198.18.0.1", { ...TCP4, kind: 1, proto: 0 }));
  assert.ok(!matches("host 198.18.0.1", { ...TCP4, kind: 0, proto: 0 }));
  assert.ok(!matches("ip=::c612:1", { kind: 4, a: "198.18.0.1" }));
  // Both ends must match when two hosts are given.
  assert.ok(matches("ip=198.18.0.1 ip=198.18.0.2", TCP4));
  assert.ok(!matches("ip=198.18.0.1 ip=198.18.0.3", TCP4));
  assert.ok(matches("ip=198.18.0.1 ip=198.18.0.3|ip=198.18.0.2", TCP4));
});

Deno.test("match: net CIDR and mask, IPv4 and IPv6", () => {
  assert.ok(matches("net 198.18.0.0/15", TCP4));
  assert.ok(matches("net 198.18.0.0/31", TCP4));
  assert.ok(!matches("net 198.18.0.2/31", { ...TCP4, b: "198.18.0.4" }));
  assert.ok(matches("net 198.18.0.0 mask 255.254.0.0", TCP4));
  assert.ok(!matches("net 10.0.0.0/8", TCP4));
  assert.ok(matches("net 0.0.0.0/0", TCP4));
  assert.ok(!matches("net 0.0.0.0/0", UDP6));
  assert.ok(matches("ip=198.18.0.0/24", TCP4));
  assert.ok(matches("net 2001:db8::/32", UDP6));
  assert.ok(matches("net 2001:db8:0:1::/64", { ...UDP6, a: "fe80::1" }));
  assert.ok(!matches("net 2001:db8:0:2::/64", { ...UDP6, a: "fe80::1" }));
  assert.ok(matches("net 2001:db8:: mask ffff:ffff::", UDP6));
  assert.ok(!matches("net 2001:db9::/32", UDP6));
  assert.ok(matches("net ::/0", UDP6));
  // High-bit words compare unsigned.
  assert.ok(matches("net ffff::/16", { ...UDP6, a: "ffff::1" }));
  assert.ok(!matches("net ffff::/16", { ...UDP6, a: "fffe::1", b: "7fff::1" }));
});

Deno.test("match: ip= ranges, inclusive, including IPv6 ranges across word boundaries", () => {
  const r4 = "ip=1.1.1.0-1.1.2.200";
  for (
    const [a, want] of [
      ["1.1.1.0", true],
      ["1.1.2.200", true],
      ["1.1.1.255", true],
      ["1.1.0.255", false],
      ["1.1.2.201", false],
    ] as const
  ) {
    assert.equal(matches(r4, { kind: 4, a, b: "9.9.9.9" }), want, a);
    assert.equal(matches(r4, { kind: 4, a: "9.9.9.9", b: a }), want, a);
  }
  assert.ok(matches("ip=198.18.0.0-255.255.255.255", TCP4));
  assert.ok(!matches("ip=198.18.0.3-255.255.255.255", TCP4));
  const r6 = "ip=2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::5";
  for (
    const [a, want] of [
      ["2001:db8::ffff:ffff:ffff:ffff", true],
      ["2001:db8:0:1::", true],
      ["2001:db8:0:1::5", true],
      ["2001:db8::ffff:ffff:ffff:fffe", false],
      ["2001:db8::8000:0:0:0", false],
      ["2001:db8:0:1::6", false],
      ["2001:db8:0:1:8000::", false],
    ] as const
  ) {
    assert.equal(matches(r6, { kind: 6, a, b: "fe80::1" }), want, a);
    assert.equal(matches(r6, { kind: 6, a: "fe80::1", b: a }), want, a);
  }
  // A range spanning whole words (word 0 differs) and the top of the space.
  const wide = "ip=2001:db8:ffff:ffff::-2001:db9:0:1::";
  assert.ok(matches(wide, { kind: 6, a: "2001:db8:ffff:ffff:ffff::" }));
  assert.ok(matches(wide, { kind: 6, a: "2001:db9::ffff" }));
  assert.ok(!matches(wide, { kind: 6, a: "2001:db9:0:1::1" }));
  assert.ok(
    matches("ip=ffff::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", { kind: 6, a: "ffff::1" }),
  );
});

Deno.test("match: port and portrange need TCP, UDP or SCTP and match either end", () => {
  for (
    const text of ["port 80", "port=80", "port 40000", "portrange 79-81", "portrange 40000-65535"]
  ) {
    assert.ok(matches(text, TCP4), text);
    assert.ok(matches(text, { ...TCP4, proto: 17 }), text);
    assert.ok(matches(text, { ...TCP4, proto: 132 }), text);
    assert.ok(matches(text, { ...TCP4, kind: 6, a: "::1", b: "::2" }), text);
    assert.ok(!matches(text, { ...TCP4, proto: 47 }), text);
    assert.ok(!matches(text, { ...TCP4, kind: 1, proto: 0 }), text);
    assert.ok(!matches(text, { ...TCP4, kind: 0, proto: 0 }), text);
  }
  assert.ok(!matches("port 81", TCP4));
  assert.ok(!matches("portrange 81-39999", TCP4));
  assert.ok(matches("port 5353", UDP6));
  // ICMP and L2 keys carry no ports (L2 carries the EtherType in word 8).
  assert.ok(!matches("port 0", { kind: 4, a: "1.2.3.4", proto: 1 }));
  assert.ok(!matches("port 2054", { kind: 1, portB: 0x0806 }));
  // A later fragment keys with ports 0: only `port 0` can match it.
  // A later fragment or a cut-off transport header has no port at all, not port 0 (tcpdump,
  // stenographer); a real port 0 is a port.
  const laterFragment: KeySpec = { kind: 4, a: "1.2.3.4", b: "5.6.7.8", proto: 6, noPorts: true };
  assert.ok(!matches("port 80", laterFragment));
  assert.ok(!matches("port 0", laterFragment));
  assert.ok(!matches("portrange 0-10", laterFragment));
  assert.ok(
    !matches(
      "port 0 or port 1 or port 2 or port 3 or port 4 or port 5 or port 6 or port 7 or port 8",
      laterFragment,
    ),
  );
  assert.ok(matches("tcp", laterFragment));
  const portZero: KeySpec = { kind: 4, a: "1.2.3.4", b: "5.6.7.8", proto: 17, portA: 0, portB: 9 };
  assert.ok(matches("port 0", portZero));
  // An index written before the bit existed: such packets still show port 0.
  assert.ok(matches("port 0", { ...laterFragment, noPorts: false }));
});

Deno.test("match: protocol predicates and their families", () => {
  const icmp4: KeySpec = { kind: 4, a: "1.2.3.4", proto: 1 };
  const icmp6: KeySpec = { kind: 6, a: "::1", proto: 58 };
  const tcp6: KeySpec = { ...UDP6, proto: 6 };
  const cases: [string, KeySpec, boolean][] = [
    ["protocol=6", TCP4, true],
    ["proto=6", tcp6, true],
    ["proto 6", tcp6, true],
    ["protocol=17", TCP4, false],
    ["ip proto 6", TCP4, true],
    ["ip proto 6", tcp6, true], // stenographer: IPv4 and IPv6
    ["ip proto 58", icmp6, true],
    ["ip proto 58", { ...icmp6, kind: 4 }, true],
    ["ip proto 1", icmp6, false],
    ["ip6 proto 6", tcp6, true],
    ["ip6 proto 6", TCP4, false],
    ["tcp", TCP4, true],
    ["tcp", tcp6, true],
    ["udp", UDP6, true],
    ["udp", TCP4, false],
    ["sctp", { ...TCP4, proto: 132 }, true],
    ["icmp", icmp4, true],
    ["icmp", { ...icmp4, kind: 6 }, false],
    ["icmp", icmp6, false],
    ["icmp6", icmp6, true],
    ["icmp6", { ...icmp6, kind: 4 }, false],
    ["proto 0", { kind: 1, proto: 0 }, false],
    ["proto 0", { kind: 0, proto: 0 }, false],
    ["proto 0", { kind: 6, a: "::1", proto: 0 }, true],
    ["ip", TCP4, true],
    ["ip", UDP6, false],
    ["ip6", UDP6, true],
    ["ip6", { kind: 1 }, false],
    ["ip and tcp", TCP4, true],
    ["ip6 tcp", TCP4, false],
  ];
  for (const [text, spec, want] of cases) {
    assert.equal(matches(text, spec), want, `${text} on kind ${spec.kind} proto ${spec.proto}`);
  }
});

Deno.test("match: vlan is the outermost id, 0 when untagged, any kind", () => {
  assert.ok(matches("vlan 100", { ...TCP4, vlan: 100 }));
  assert.ok(matches("vlan=100", { ...TCP4, vlan: 100 }));
  assert.ok(!matches("vlan 100", { ...TCP4, vlan: 101 }));
  assert.ok(!matches("vlan 100", TCP4));
  assert.ok(matches("vlan 0", TCP4));
  assert.ok(matches("vlan 4095", { kind: 1, vlan: 4095 }));
  assert.ok(matches("vlan 7 and not tcp", { kind: 1, vlan: 7 }));
});

Deno.test("match: boolean structure and keyOffset into a packed key table", () => {
  const table = new Uint32Array(3 * KEY_WORDS);
  table.set(makeKey(TCP4), 0);
  table.set(makeKey(UDP6), KEY_WORDS);
  table.set(makeKey({ kind: 1, vlan: 5, portB: 0x0806 }), 2 * KEY_WORDS);
  const run = (text: string) =>
    [0, 1, 2].map((i) => packetMatches(q(text), table, i * KEY_WORDS, NOW));
  assert.deepEqual(run("tcp"), [true, false, false]);
  assert.deepEqual(run("not tcp"), [false, true, true]);
  assert.deepEqual(run("tcp or udp"), [true, true, false]);
  assert.deepEqual(run("tcp|udp port=53"), [false, true, false]);
  assert.deepEqual(run("ip6 or vlan 5"), [false, true, true]);
  assert.deepEqual(run("not (ip or ip6)"), [false, false, true]);
  assert.deepEqual(run("host 198.18.0.1 or host 2001:db8::1 and port 53"), [false, true, false]);
  assert.deepEqual(run("host 198.18.0.1 or (host 2001:db8::1 and port 53)"), [true, true, false]);
  assert.deepEqual(run("host 198.18.0.1 or host 2001:db8::1 port 53"), [true, true, false]);
});

Deno.test("match: time predicates per packet (after inclusive, before exclusive)", () => {
  const at = Date.UTC(2026, 10, 23, 10) / 1000;
  assert.ok(matches("after 2026-11-23T10:00:00Z", TCP4, at));
  assert.ok(!matches("after 2026-11-23T10:00:00Z", TCP4, at - 1e-6));
  assert.ok(!matches("before 2026-11-23T10:00:00Z", TCP4, at));
  assert.ok(matches("before 2026-11-23T10:00:00Z", TCP4, at - 1e-6));
  assert.ok(matches("last=4h", TCP4, NOW - 4 * 3600));
  assert.ok(!matches("last=4h", TCP4, NOW - 4 * 3600 - 0.5));
  assert.ok(matches("last=4h", TCP4, NOW + 10)); // no upper bound
  assert.ok(matches("after 2h ago and before 1h ago", TCP4, NOW - 5400));
  assert.ok(!matches("after 2h ago and before 1h ago", TCP4, NOW - 3600));
  assert.ok(!matches("tcp last=1h", UDP6, NOW));
  assert.ok(matches("not last=1h", TCP4, NOW - 7200));
});

Deno.test("match: flowTruth is three-valued over [firstTs, lastTs]", () => {
  const key = makeKey(TCP4);
  const T = NOW - 3600; // `last=1h` bound
  const truth = (text: string, first: number, last: number) =>
    flowTruth(q(text), key, 0, first, last);
  // after T
  assert.equal(truth("last=1h", T, T + 10), Truth.True);
  assert.equal(truth("last=1h", T - 10, T - 1), Truth.False);
  assert.equal(truth("last=1h", T - 10, T), Truth.Unknown);
  // before T
  assert.equal(truth("before 1h ago", T - 10, T - 1), Truth.True);
  assert.equal(truth("before 1h ago", T, T + 1), Truth.False);
  assert.equal(truth("before 1h ago", T - 1, T + 1), Truth.Unknown);
  // not flips True/False and keeps Unknown
  assert.equal(truth("not last=1h", T, T + 10), Truth.False);
  assert.equal(truth("not last=1h", T - 10, T - 1), Truth.True);
  assert.equal(truth("not last=1h", T - 10, T + 10), Truth.Unknown);
  // and: False dominates, or: True dominates
  assert.equal(truth("udp last=1h", T - 10, T + 10), Truth.False);
  assert.equal(truth("tcp last=1h", T - 10, T + 10), Truth.Unknown);
  assert.equal(truth("tcp last=1h", T + 1, T + 10), Truth.True);
  assert.equal(truth("tcp or last=1h", T - 10, T - 5), Truth.True);
  assert.equal(truth("udp or last=1h", T - 10, T + 10), Truth.Unknown);
  assert.equal(truth("udp or last=1h", T - 10, T - 5), Truth.False);
  assert.equal(truth("udp or not last=1h", T - 10, T + 10), Truth.Unknown);
  assert.equal(truth("tcp", T, T), Truth.True);
  // A flow may match unless its truth is False
  assert.ok(flowTruth(q("last=1h"), key, 0, T - 10, T + 10) !== Truth.False);
  assert.ok(flowTruth(q("last=1h"), key, 0, T - 10, T - 5) === Truth.False);
  assert.ok(flowTruth(q("udp"), key, 0, 0, Infinity) === Truth.False);
  assert.ok(flowTruth(q("after 2h ago before 1h ago"), key, 0, T - 10, T + 10) !== Truth.False);
  // Sound: every packet time inside the flow agrees with a definite flow answer.
  const queries = ["last=1h", "not last=1h", "tcp or before 1h ago", "last=2h and not last=1h"];
  for (const text of queries) {
    for (const [first, last] of [[T - 7300, T - 3700], [T - 50, T + 50], [T + 1, T + 9]]) {
      const t = flowTruth(q(text), key, 0, first, last);
      for (let ts = first; ts <= last; ts += (last - first) / 16) {
        const p = packetMatches(q(text), key, 0, ts);
        if (t === Truth.True) assert.ok(p, `${text} at ${ts}`);
        if (t === Truth.False) assert.ok(!p, `${text} at ${ts}`);
      }
    }
  }
});

Deno.test("match: timeBounds and needsPacketTimes", () => {
  const a = Date.UTC(2026, 10, 23) / 1000;
  const b = a + 86400;
  assert.deepEqual(timeBounds(q("tcp")), { from: -Infinity, to: Infinity });
  assert.deepEqual(timeBounds(q("last=1h")), { from: NOW - 3600, to: Infinity });
  assert.deepEqual(timeBounds(q("after 2026-11-23 before 2026-11-24")), { from: a, to: b });
  assert.deepEqual(timeBounds(q("tcp (after 2026-11-23 and before 2026-11-24)")), {
    from: a,
    to: b,
  });
  assert.deepEqual(timeBounds(q("not after 2026-11-23")), { from: -Infinity, to: a });
  assert.deepEqual(timeBounds(q("not (tcp or after 2026-11-23)")), { from: -Infinity, to: a });
  assert.deepEqual(timeBounds(q("tcp or after 2026-11-23")), { from: -Infinity, to: Infinity });
  assert.deepEqual(
    timeBounds(q("(after 2026-11-24 or before 2026-11-23) last=1h")),
    { from: NOW - 3600, to: Infinity },
  );
  assert.deepEqual(
    timeBounds(q("after 2026-11-24 and before 2026-11-23")),
    { from: Infinity, to: -Infinity },
  );
  assert.ok(!needsPacketTimes(q("tcp or host 1.2.3.4")));
  assert.ok(needsPacketTimes(q("tcp last=4h")));
  assert.ok(needsPacketTimes(q("tcp or not (udp and before 2026-11-23)")));
});

Deno.test("queryToBpf: translations", () => {
  assert.equal(queryToBpf(q("host 1.2.3.4")), "(ip host 1.2.3.4)");
  assert.equal(queryToBpf(q("ip=2001:db8::1")), "(ip6 host 2001:db8::1)");
  assert.equal(queryToBpf(q("net 10.0.0.0/8 port 80")), "((ip net 10.0.0.0/8) and (port 80))");
  assert.equal(queryToBpf(q("net 0.0.0.0/0")), "(ip)");
  assert.equal(
    queryToBpf(q("ip=1.1.1.0-1.1.1.128")),
    "((ip net 1.1.1.0/25) or (ip host 1.1.1.128))",
  );
  assert.equal(queryToBpf(q("protocol=17")), "(ip proto 17 or ip6 proto 17)");
  assert.equal(queryToBpf(q("icmp or icmp6")), "((ip proto 1) or (ip6 proto 58))");
  assert.equal(queryToBpf(q("not tcp")), "(not (ip proto 6 or ip6 proto 6))");
  // Time predicates that are top-level conjuncts are dropped; elsewhere untranslatable.
  assert.equal(queryToBpf(q("tcp last=4h")), "(ip proto 6 or ip6 proto 6)");
  assert.equal(queryToBpf(q("last=4h")), "");
  assert.equal(queryToBpf(q("tcp or last=4h")), null);
  assert.equal(queryToBpf(q("not last=4h")), null);
  // Ranges needing more than 64 CIDR blocks.
  assert.equal(queryToBpf(q("ip=::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")), null);
  // vlan only in the tag-aware form.
  assert.equal(queryToBpf(q("vlan 100")), null);
  assert.match(queryToBpf(q("vlan 100"), { vlanTags: true }) ?? "", /ether\[14:2\] & 0xfff = 100/);
  // Any tag: the inner id of a QinQ frame too.
  assert.match(queryToBpf(q("vlan 100"), { vlanTags: true }) ?? "", /ether\[18:2\] & 0xfff = 100/);
  // libpcap's `mpls N` sees one label of the stack: no equivalent.
  assert.equal(queryToBpf(q("mpls 16"), { vlanTags: true }), null);
});

// ---- tcpdump as the oracle ----

interface TestPacket {
  frame: Uint8Array;
  key: Uint32Array;
  /** Inner VLAN ids as the index's extra tags. */
  tags: FlowRecordRef;
}

/** Extra tags of inner VLAN ids, as the index stores them (kind 1 << 24 | id). */
function innerTags(vids: number[]): FlowRecordRef {
  // Only the extra-tags columns of a one-flow index are read for vlan predicates.
  const columns = {
    tagStart: Uint32Array.of(0),
    tagCount: Uint32Array.of(vids.length),
    tags: Uint32Array.from(vids, (v) => (1 << 24) | v),
  };
  return { index: columns as unknown as FileIndex, flow: 0 };
}

const V4 = [
  "198.18.0.1",
  "198.18.0.2",
  "198.18.1.200",
  "198.19.255.255",
  "10.0.0.1",
  "1.1.1.0",
  "1.1.2.200",
  "1.1.2.201",
  "255.255.255.254",
];
const V6 = [
  "2001:db8::1",
  "2001:db8::ff",
  "2001:db8::ffff:ffff:ffff:ffff",
  "2001:db8:0:1::",
  "2001:db8:0:1::5",
  "2001:db8:0:1::6",
  "2001:db8:ffff::1",
  "fe80::1",
  "ffff::1",
];
const PORTS = [0, 22, 53, 80, 443, 1023, 1024, 8080, 65535];
const TPIDS = [0x8100, 0x88a8, 0x9100];

function be16(out: number[], v: number): void {
  out.push((v >>> 8) & 0xff, v & 0xff);
}
function be32(out: number[], v: number): void {
  out.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
}

/** Builds one Ethernet frame and the flow key the decoder contract says it gets. */
function craftPacket(rand: () => number, tags: number[]): TestPacket {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const l3 = pick(["v4", "v4", "v4", "v6", "v6", "v6", "arp"] as const);
  const frame: number[] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
  tags.forEach((vid, i) => {
    be16(frame, i === 0 ? pick(TPIDS) : 0x8100);
    be16(frame, vid);
  });
  const vlan = tags.length > 0 ? tags[0] : 0;
  if (l3 === "arp") {
    be16(frame, 0x0806);
    be16(frame, 1);
    be16(frame, 0x0800);
    frame.push(6, 4);
    be16(frame, 1);
    frame.push(2, 0, 0, 0, 0, 1);
    be32(frame, words(pick(V4))[0]); // BPF `host X` would match this; `ip host X` must not
    frame.push(0, 0, 0, 0, 0, 0);
    be32(frame, words(pick(V4))[0]);
    const key = makeKey({ kind: 1, vlan, portB: 0x0806 });
    key[0] = 0x02000000;
    key[1] = 0x00010000;
    return { frame: new Uint8Array(frame), key, tags: innerTags(tags.slice(1)) };
  }
  const v4 = l3 === "v4";
  const proto = v4 ? pick([6, 6, 17, 17, 132, 1, 47, 58]) : pick([6, 6, 17, 17, 132, 58, 47, 1]);
  const hasPorts = proto === 6 || proto === 17 || proto === 132;
  const frag = v4 && hasPorts ? pick(["none", "none", "none", "first", "later"] as const) : "none";
  const sport = pick(PORTS);
  const dport = pick(PORTS);
  const transport: number[] = [];
  if (frag === "later") {
    for (let i = 0; i < 8; i++) transport.push(0);
  } else if (proto === 6) {
    be16(transport, sport);
    be16(transport, dport);
    be32(transport, 1);
    be32(transport, 0);
    transport.push(0x50, 0x02);
    be16(transport, 8192);
    be16(transport, 0);
    be16(transport, 0);
  } else if (proto === 17) {
    be16(transport, sport);
    be16(transport, dport);
    be16(transport, 8);
    be16(transport, 0);
  } else if (proto === 132) {
    be16(transport, sport);
    be16(transport, dport);
    be32(transport, 0);
    be32(transport, 0);
  } else {
    transport.push(8, 0, 0, 0, 0, 1, 0, 1);
  }
  const src = pick(v4 ? V4 : V6);
  const dst = pick(v4 ? V4 : V6);
  if (v4) {
    be16(frame, 0x0800);
    frame.push(0x45, 0);
    be16(frame, 20 + transport.length);
    be16(frame, 0x1234);
    be16(frame, frag === "first" ? 0x2000 : frag === "later" ? 0x0064 : 0x4000);
    frame.push(64, proto, 0, 0);
    be32(frame, words(src)[0]);
    be32(frame, words(dst)[0]);
  } else {
    be16(frame, 0x86dd);
    frame.push(0x60, 0, 0, 0);
    be16(frame, transport.length);
    frame.push(proto, 64);
    for (const w of [...words(src), ...words(dst)]) be32(frame, w);
  }
  frame.push(...transport);
  const ported = hasPorts && frag !== "later";
  const key = makeKey({
    kind: v4 ? 4 : 6,
    a: src,
    b: dst,
    portA: ported ? sport : 0,
    portB: ported ? dport : 0,
    proto,
    vlan,
    noPorts: hasPorts && !ported,
  });
  return { frame: new Uint8Array(frame), key, tags: innerTags(tags.slice(1)) };
}

function pcapFile(packets: TestPacket[]): Uint8Array {
  const parts: number[] = [];
  const le32 = (v: number) => parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
  le32(0xa1b2c3d4);
  parts.push(2, 0, 4, 0);
  le32(0);
  le32(0);
  le32(65535);
  le32(1); // LINKTYPE_ETHERNET
  packets.forEach((p, i) => {
    le32(i + 1); // ts_sec identifies the packet
    le32(0);
    le32(p.frame.length);
    le32(p.frame.length);
    parts.push(...p.frame);
  });
  return new Uint8Array(parts);
}

/** Packet numbers (ts_sec) tcpdump selects with `filter`. */
async function tcpdumpSelect(file: string, filter: string): Promise<number[]> {
  const out = await new Deno.Command("tcpdump", {
    args: ["-r", file, "-w", "-", ...(filter === "" ? [] : [filter])],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  // libpcap's optimizer refuses filters it proves can never match.
  if (!out.success && err.includes("expression rejects all packets")) return [];
  assert.ok(out.success, `tcpdump failed on ${filter}: ${err}`);
  const b = out.stdout;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const selected: number[] = [];
  for (let off = 24; off + 16 <= b.length;) {
    selected.push(dv.getUint32(off, true));
    off += 16 + dv.getUint32(off + 8, true);
  }
  return selected;
}

function randomQueryText(rand: () => number, depth: number, vlans: boolean): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  if (depth === 0 || rand() < 0.3) {
    const leaves = [
      () => `${pick(["host ", "ip="])}${pick([...V4, ...V6])}`,
      () =>
        `${pick(["net ", "ip="])}${
          pick([
            "198.18.0.0/15",
            "198.18.0.0/24",
            "10.0.0.0/8",
            "1.1.0.0/16",
            "2001:db8::/32",
            "2001:db8::/64",
            "2001:db8:0:1::/64",
            "fe80::/10",
          ])
        }`,
      () => "net 198.18.0.0 mask 255.254.0.0",
      () =>
        "ip=" +
        pick([
          "1.1.1.0-1.1.2.200",
          "198.18.0.2-198.19.0.0",
          "2001:db8::ff-2001:db8:0:1::5",
          "2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::5",
        ]),
      () => `${pick(["port ", "port="])}${pick(PORTS)}`,
      () => `portrange ${pick(["0-1023", "1024-65535", "53-80", "0-0"])}`,
      () =>
        `${pick(["protocol=", "proto=", "proto ", "ip proto ", "ip6 proto "])}${
          pick([1, 6, 17, 47, 58, 132])
        }`,
      () => pick(["tcp", "udp", "sctp", "icmp", "icmp6", "ip", "ip6"]),
      ...(vlans ? [() => `${pick(["vlan ", "vlan="])}${pick([0, 100, 200, 300])}`] : []),
    ];
    return pick(leaves)();
  }
  const a = randomQueryText(rand, depth - 1, vlans);
  const b = randomQueryText(rand, depth - 1, vlans);
  switch (pick(["and", "&&", "or", "||", " ", "|", "not", "!"])) {
    case "not":
      return `not (${a})`;
    case "!":
      return `!(${a})`;
    case " ":
      return `(${a}) (${b})`;
    case "|":
      return `(${a})|(${b})`;
    default:
      return `(${a}) ${pick(["and", "&&", "or", "||"])} (${b})`;
  }
}

async function oracleRun(name: string, packets: TestPacket[], vlanTags: boolean, seed: number) {
  const dir = await Deno.makeTempDir({ prefix: "cc-query-" });
  try {
    const file = `${dir}/${name}.pcap`;
    await Deno.writeFile(file, pcapFile(packets));
    const rand = prng(seed);
    const fixed = [
      "host 198.18.0.1",
      "ip=2001:db8:0:1::5",
      "not host 198.18.0.1",
      "port 0",
      "port 80 or port 443",
      "tcp port 80",
      "icmp or icmp6",
      "ip=1.1.1.0-1.1.2.200",
      "ip=2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::5",
      "net 2001:db8::/32 and not udp",
      "portrange 0-1023",
      ...(vlanTags ? ["vlan 100", "vlan 0", "not vlan 100", "vlan 100 or vlan 300 and tcp"] : []),
    ];
    const texts = [...fixed];
    for (let i = 0; i < 60; i++) texts.push(randomQueryText(rand, 3, vlanTags));
    let compared = 0;
    for (const text of texts) {
      const query = parseQuery(text, { now: NOW });
      const filter = queryToBpf(query, { vlanTags });
      if (filter === null) continue;
      compared++;
      const want = await tcpdumpSelect(file, filter);
      const got = packets.flatMap((p, i) =>
        packetMatches(query, p.key, 0, NOW, p.tags) ? [i + 1] : []
      );
      assert.deepEqual(got, want, `${text}\n  = ${formatQuery(query)}\n  bpf ${filter}`);
    }
    assert.ok(compared >= texts.length - 5, `only ${compared} of ${texts.length} translated`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("oracle: untagged packets, matcher equals tcpdump with queryToBpf", async () => {
  const rand = prng(1);
  const packets: TestPacket[] = [];
  for (let i = 0; i < 400; i++) packets.push(craftPacket(rand, []));
  await oracleRun("plain", packets, false, 7);
});

Deno.test("oracle: VLAN and QinQ packets, matcher equals tcpdump with vlanTags", async () => {
  const rand = prng(2);
  const stacks = [[], [], [100], [200], [0], [300], [100, 300], [300, 100], [200, 200]];
  const packets: TestPacket[] = [];
  for (let i = 0; i < 500; i++) {
    packets.push(craftPacket(rand, stacks[Math.floor(rand() * stacks.length)]));
  }
  await oracleRun("vlan", packets, true, 8);
});

Deno.test("match: long or-lists (port and address sets) equal their terms one by one", () => {
  const rand = prng(18);
  const pick = (n: number) => Math.floor(rand() * n);
  for (let round = 0; round < 40; round++) {
    const terms: string[] = [];
    for (let i = 0; i < 4 + pick(40); i++) {
      switch (pick(5)) {
        case 0:
          terms.push(`port ${PORTS[pick(PORTS.length)]}`);
          break;
        case 1:
          terms.push(`portrange ${pick(2000)}-${1000 + pick(64536)}`);
          break;
        case 2:
          terms.push(`host ${V4[pick(V4.length)]}`);
          break;
        case 3:
          terms.push(`host ${V6[pick(V6.length)]}`);
          break;
        default: {
          const from = pick(256);
          terms.push(`ip=198.18.${from}.0-198.18.${from + pick(256 - from)}.${pick(256)}`);
        }
      }
    }
    const whole = q(terms.join(" or "));
    const single = terms.map(q);
    for (let k = 0; k < 200; k++) {
      const v6 = pick(2) === 1;
      const list = v6 ? V6 : V4;
      const spec: KeySpec = {
        kind: v6 ? 6 : 4,
        a: list[pick(list.length)],
        b: list[pick(list.length)],
        portA: pick(3) === 0 ? PORTS[pick(PORTS.length)] : pick(65536),
        portB: pick(65536),
        proto: [6, 17, 132, 1][pick(4)],
      };
      const key = makeKey(spec);
      const expected = single.some((t) => packetMatches(t, key, 0, NOW));
      assert.equal(
        packetMatches(whole, key, 0, NOW),
        expected,
        `${terms.join(" or ")} ${JSON.stringify(spec)}`,
      );
      assert.equal(flowTruth(whole, key, 0, NOW, NOW), expected ? Truth.True : Truth.False);
    }
  }
});

Deno.test("match: a long `or` of addresses (sorted ranges) agrees with its children one by one", () => {
  // Hosts, overlapping and nested networks and ranges of both families, plus non-address terms.
  const terms: string[] = [];
  for (let i = 0; i < 300; i += 3) terms.push(`host 198.18.${i >> 4}.${i & 15}`);
  for (let i = 0; i < 40; i += 2) terms.push(`host 2001:db8::${i.toString(16)}`);
  terms.push(
    "net 198.19.0.0/16",
    "net 198.19.4.0/24",
    "ip=198.18.3.0-198.18.9.255",
    "net 2001:db8:1::/48",
    "ip=2001:db8::20-2001:db8::2f",
    "host ::ffff:10.0.0.1",
    "port 7",
    "icmp6",
  );
  const big = q(terms.join(" or "));
  assert.equal(big.type, "or");
  const children = big.type === "or" ? big.children : [];
  const specs: KeySpec[] = [];
  for (let i = 0; i < 320; i++) {
    specs.push({ ...TCP4, a: `198.18.${i >> 4}.${i & 15}`, b: "203.0.113.1" });
    specs.push({ ...TCP4, a: "203.0.113.1", b: `198.19.${i & 7}.${i & 255}` });
    specs.push({ ...UDP6, a: `2001:db8::${i.toString(16)}`, b: "2001:db8:2::1" });
  }
  specs.push(
    { ...TCP4, a: "10.0.0.1", b: "10.0.0.2" },
    { ...TCP4, a: "10.0.0.3", b: "10.0.0.2", portA: 7 },
    { ...UDP6, a: "2001:db8:1:ffff::1", b: "2001:db8:5::1" },
    { kind: 6, a: "2001:db8:9::1", b: "2001:db8:9::2", proto: 58 },
    { kind: 1, a: "198.18.0.0" },
    { ...UDP6, kind: 4, a: "198.18.0.0" },
  );
  let hits = 0;
  for (const spec of specs) {
    const key = makeKey(spec);
    const one = children.some((c) => packetMatches(c, key, 0, NOW));
    assert.equal(packetMatches(big, key, 0, NOW), one, JSON.stringify(spec));
    assert.equal(flowTruth(big, key, 0, NOW, NOW) === Truth.True, one, JSON.stringify(spec));
    if (one) hits++;
  }
  assert.ok(hits > 100 && hits < specs.length - 100, `${hits} of ${specs.length} match`);
});
