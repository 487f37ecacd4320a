import assert from "node:assert/strict";
import {
  formatAddress,
  maskToPrefix,
  parseAddress,
  parseIpv4,
  parseIpv6,
  rangePrefix,
  rangeToCidrs,
  type Words,
} from "../../src/query/address.ts";
import { formatQuery, formatTime, type Query } from "../../src/query/ast.ts";
import {
  MAX_QUERY_DEPTH,
  MAX_QUERY_LENGTH,
  parseQuery,
  QueryError,
} from "../../src/query/parse.ts";

// 2027-01-15T08:00:00Z: every relative time below is resolved against this.
const NOW = 1_800_000_000;

function canon(text: string): string {
  return formatQuery(parseQuery(text, { now: NOW }));
}

// [query, canonical fully-parenthesised form]: the canonical form shows both the tree shape and
// the precedence decisions.
const VALID: [string, string][] = [
  // classic dialect (stenographer README examples first)
  ["ip=1.1.1.1", "host 1.1.1.1"],
  ["ip=1.1.1.0-1.1.2.200", "ip=1.1.1.0-1.1.2.200"],
  ["port=80", "port 80"],
  ["protocol=6", "proto 6"],
  ["proto=17", "proto 17"],
  ["proto=tcp", "proto 6"],
  ["last=4h", "after 2027-01-15T04:00:00Z"],
  ["last=45m", "after 2027-01-15T07:15:00Z"],
  ["last=30s", "after 2027-01-15T07:59:30Z"],
  ["last=2d", "after 2027-01-13T08:00:00Z"],
  ["last=1h30m", "after 2027-01-15T06:30:00Z"],
  [
    "ip=1.1.1.1 ip=2.2.2.2 last=45m",
    "(host 1.1.1.1 and host 2.2.2.2 and after 2027-01-15T07:15:00Z)",
  ],
  ["ip=1.1.1.1 ip=2.2.2.2|ip=3.3.3.3", "(host 1.1.1.1 and (host 2.2.2.2 or host 3.3.3.3))"],
  [
    "ip=1.1.1.1 port=80|port=8080|port=443",
    "(host 1.1.1.1 and (port 80 or port 8080 or port 443))",
  ],
  [
    "ip=1.1.1.1 ip=2.2.2.2 port=80 port=65535 proto=6",
    "(host 1.1.1.1 and host 2.2.2.2 and port 80 and port 65535 and proto 6)",
  ],
  ["ip=10.0.0.0-10.255.255.255", "net 10.0.0.0/8"],
  ["ip=10.1.0.0/16", "net 10.1.0.0/16"],
  ["ip=2001:db8::1", "host 2001:db8::1"],
  [
    "ip=2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::5",
    "ip=2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::5",
  ],
  // IPv4-mapped IPv6 means the IPv4 host, as in stenographer
  ["ip=::ffff:1.2.3.4", "host 1.2.3.4"],
  ["host ::ffff:198.18.0.7", "host 198.18.0.7"],
  ["host ::FFFF:c612:7", "host 198.18.0.7"],
  ["net ::ffff:10.0.0.0/104", "net 10.0.0.0/8"],
  ["net ::ffff:0:0/96", "net 0.0.0.0/0"],
  ["net ::ffff:0:0/95", "net ::fffe:0:0/95"],
  ["ip=::ffff:1.2.3.4-::ffff:1.2.3.9", "ip=1.2.3.4-1.2.3.9"],
  ["host ::fffe:1.2.3.4", "host ::fffe:102:304"],
  ["ip = 1.1.1.1", "host 1.1.1.1"],
  ["vlan=100", "vlan 100"],
  // BPF subset
  ["host 1.1.1.1", "host 1.1.1.1"],
  ["host 2001:DB8:0:0:0:0:0:1", "host 2001:db8::1"],
  ["net 10.0.0.0/8", "net 10.0.0.0/8"],
  // host bits are masked off, as stenographer does (its own valid queries)
  ["net 1.2.3.4/8", "net 1.0.0.0/8"],
  ["net 1.2.3.4 mask 255.255.254.0", "net 1.2.2.0/23"],
  ["net 2001:db8::1/32", "net 2001:db8::/32"],
  ["ip=10.0.0.1/8", "net 10.0.0.0/8"],
  ["net 10.1.0.0 mask 255.0.0.0", "net 10.0.0.0/8"],
  ["net 198.18.0.7/0", "net 0.0.0.0/0"],
  ["net 2001:db8::/32", "net 2001:db8::/32"],
  ["net 192.168.0.0 mask 255.255.0.0", "net 192.168.0.0/16"],
  ["net 2001:db8:: mask ffff:ffff::", "net 2001:db8::/32"],
  ["net 10.1.2.3", "host 10.1.2.3"],
  ["port 53", "port 53"],
  ["portrange 1000-2000", "portrange 1000-2000"],
  // stenographer: `ip proto N` is IPv4 and IPv6 alike; `ip6 proto N` is IPv6 only
  ["ip proto 1", "proto 1"],
  ["ip proto 58", "proto 58"],
  ["ip6 proto 58", "ip6 proto 58"],
  ["proto 47", "proto 47"],
  ["ip proto tcp", "proto 6"],
  ["tcp", "proto 6"],
  ["udp", "proto 17"],
  ["sctp", "proto 132"],
  ["icmp", "icmp"],
  ["icmp6", "ip6 proto 58"],
  ["ip6", "ip6"],
  ["vlan 100", "vlan 100"],
  ["before 2026-11-23T10:00:00Z", "before 2026-11-23T10:00:00Z"],
  ["after 2026-11-23", "after 2026-11-23T00:00:00Z"],
  ["after 2026-11-23t10:00:00.123456+02:00", "after 2026-11-23T08:00:00.123456Z"],
  ["before 2026-11-23T10:00:00-01:30", "before 2026-11-23T11:30:00Z"],
  ["before 3h ago", "before 2027-01-15T05:00:00Z"],
  ["after 1d12h ago", "after 2027-01-13T20:00:00Z"],
  // operators and precedence
  ["host 1.1.1.1 and (port 80 or port 443)", "(host 1.1.1.1 and (port 80 or port 443))"],
  ["host 1.1.1.1 && (port 80 || port 443)", "(host 1.1.1.1 and (port 80 or port 443))"],
  // and/or: equal precedence, left to right
  ["host 1.1.1.1 and port 80 or port 443", "((host 1.1.1.1 and port 80) or port 443)"],
  ["host 1.1.1.1 or host 2.2.2.2 and port 80", "((host 1.1.1.1 or host 2.2.2.2) and port 80)"],
  ["tcp or udp or icmp", "(proto 6 or proto 17 or icmp)"],
  // adjacency binds tighter than and/or
  ["ip=1.1.1.1 port=80 or port=443", "((host 1.1.1.1 and port 80) or port 443)"],
  ["host 1.1.1.1 or host 2.2.2.2 port 80", "(host 1.1.1.1 or (host 2.2.2.2 and port 80))"],
  ["tcp port 80", "(proto 6 and port 80)"],
  ["ip host 1.2.3.4", "(ip and host 1.2.3.4)"],
  ["ip proto=6", "(ip and proto 6)"],
  // | binds tighter than adjacency and and/or; not binds tightest
  ["port=80|port=443 or tcp", "(port 80 or port 443 or proto 6)"],
  ["port=80|port=443 and tcp", "((port 80 or port 443) and proto 6)"],
  ["!tcp|udp", "(not proto 6 or proto 17)"],
  ["not tcp and udp", "(not proto 6 and proto 17)"],
  ["not (tcp or udp)", "not (proto 6 or proto 17)"],
  ["not not tcp", "not not proto 6"],
  ["((((tcp))))", "proto 6"],
  // dialects mixed
  ["ip=1.1.1.1 and last=45m", "(host 1.1.1.1 and after 2027-01-15T07:15:00Z)"],
  [
    "(host 1.1.1.1 or ip=2.2.2.2) last=1h tcp",
    "((host 1.1.1.1 or host 2.2.2.2) and after 2027-01-15T07:00:00Z and proto 6)",
  ],
  ["HOST 1.1.1.1 AND NOT Port 22", "(host 1.1.1.1 and not port 22)"],
  ["host 1.1.1.1(port 80|port 443)", "(host 1.1.1.1 and (port 80 or port 443))"],
];

Deno.test("parseQuery: valid queries give the expected tree and precedence", () => {
  assert.ok(VALID.length >= 30);
  for (const [text, expected] of VALID) {
    assert.equal(canon(text), expected, `query ${JSON.stringify(text)}`);
  }
});

Deno.test("parseQuery: canonical text parses back to an equal tree", () => {
  for (const [text] of VALID) {
    const q = parseQuery(text, { now: NOW });
    assert.deepEqual(parseQuery(formatQuery(q), { now: NOW }), q, `query ${JSON.stringify(text)}`);
  }
});

Deno.test("parseQuery: AST nodes carry resolved numbers", () => {
  const ip = (w: number): Words => [w, 0, 0, 0];
  assert.deepEqual(parseQuery("ip=1.1.1.1"), {
    type: "address",
    family: 4,
    from: ip(0x01010101),
    to: ip(0x01010101),
  });
  assert.deepEqual(parseQuery("ip=1.1.1.0-1.1.2.200"), {
    type: "address",
    family: 4,
    from: ip(0x01010100),
    to: ip(0x010102c8),
  });
  assert.deepEqual(parseQuery("net 2001:db8::/32"), {
    type: "address",
    family: 6,
    from: [0x20010db8, 0, 0, 0],
    to: [0x20010db8, 0xffffffff, 0xffffffff, 0xffffffff],
  });
  const expected: Query = {
    type: "and",
    children: [
      { type: "address", family: 4, from: ip(0x01010101), to: ip(0x01010101) },
      {
        type: "or",
        children: [
          { type: "address", family: 4, from: ip(0x02020202), to: ip(0x02020202) },
          { type: "address", family: 4, from: ip(0x03030303), to: ip(0x03030303) },
        ],
      },
    ],
  };
  assert.deepEqual(parseQuery("ip=1.1.1.1 ip=2.2.2.2|ip=3.3.3.3"), expected);
  assert.deepEqual(parseQuery("last=4h", { now: NOW }), {
    type: "time",
    op: "after",
    at: NOW - 4 * 3600,
  });
  assert.deepEqual(parseQuery("before 2h ago", { now: 1000.5 }), {
    type: "time",
    op: "before",
    at: 1000.5 - 7200,
  });
  assert.deepEqual(parseQuery("icmp"), { type: "proto", proto: 1, family: 4 });
  assert.deepEqual(parseQuery("tcp"), { type: "proto", proto: 6, family: 0 });
  assert.deepEqual(parseQuery("portrange 0-1023"), { type: "port", from: 0, to: 1023 });
  assert.deepEqual(parseQuery("not vlan 7"), { type: "not", child: { type: "vlan", vlan: 7 } });
  // Default `now` is the wall clock.
  const q = parseQuery("last=1m");
  assert.ok(q.type === "time" && Math.abs(q.at - (Date.now() / 1000 - 60)) < 5);
});

Deno.test("parseQuery: limits accept the maximum and reject one more", () => {
  const deep = "(".repeat(MAX_QUERY_DEPTH) + "tcp" + ")".repeat(MAX_QUERY_DEPTH);
  assert.equal(canon(deep), "proto 6");
  assert.equal(canon("!".repeat(MAX_QUERY_DEPTH) + "tcp").split("not").length, 65);
  const long = "tcp " + " ".repeat(MAX_QUERY_LENGTH - 8) + "udp";
  assert.equal(long.length, MAX_QUERY_LENGTH - 1);
  assert.equal(canon(long), "(proto 6 and proto 17)");
});

Deno.test("parseQuery: a 64 KiB list of thousands of hosts is one flat `or`", () => {
  const hosts: string[] = [];
  for (let i = 0; hosts.join(" or ").length < MAX_QUERY_LENGTH - 40; i++) {
    hosts.push(`host 10.${(i >> 8) & 255}.${i & 255}.${i % 7}`);
  }
  const text = hosts.map((h) => h.replace("host ", "host ")).join(" or ");
  assert.ok(text.length <= MAX_QUERY_LENGTH && hosts.length > 3000, `${hosts.length} hosts`);
  const q = parseQuery(text);
  assert.equal(q.type, "or");
  assert.equal(q.type === "or" && q.children.length, hosts.length);
  // Mixed runs of operators keep left-to-right grouping.
  assert.equal(
    canon("tcp or udp and icmp or sctp or ip6 and port 1 and port 2"),
    "((((proto 6 or proto 17) and icmp) or proto 132 or ip6) and port 1 and port 2)",
  );
});

// Every query of stenographer's query/query_test.go and its README's "Query Language" section.
const STENOGRAPHER_VALID: [string, string][] = [
  ["net 1.2.3.4/8", "net 1.0.0.0/8"],
  ["net 1.2.3.4 mask 255.255.254.0", "net 1.2.2.0/23"],
  ["host 1.2.3.4", "host 1.2.3.4"],
  ["port 80", "port 80"],
  ["ip proto 6", "proto 6"],
  ["tcp", "proto 6"],
  ["udp", "proto 17"],
  ["icmp", "icmp"],
  ["before 45m ago", "before 2027-01-15T07:15:00Z"],
  ["after 3h ago", "after 2027-01-15T05:00:00Z"],
  ["after 2015-01-01T13:14:15Z", "after 2015-01-01T13:14:15Z"],
  ["before 2015-01-01T13:14:15+01:00", "before 2015-01-01T12:14:15Z"],
  ["host 1.2.3.4 and port 255", "(host 1.2.3.4 and port 255)"],
  [
    "(port 80 or (host 1.2.3.4 and tcp) or port 7)",
    "(port 80 or (host 1.2.3.4 and proto 6) or port 7)",
  ],
  ["udp and port 514 or tcp and port 80", "(((proto 17 and port 514) or proto 6) and port 80)"],
  ["(udp && port 514) or (tcp and port 80)", "((proto 17 and port 514) or (proto 6 and port 80))"],
  [
    "(port 80 && after 2015-01-01T13:14:15Z) || (host 1.2.3.4 && before 2015-01-01T13:14:15Z)",
    "((port 80 and after 2015-01-01T13:14:15Z) or (host 1.2.3.4 and before 2015-01-01T13:14:15Z))",
  ],
  // README
  ["host 8.8.8.8", "host 8.8.8.8"],
  ["net 1.0.0.0/8", "net 1.0.0.0/8"],
  ["net 1.0.0.0 mask 255.255.255.0", "net 1.0.0.0/24"],
  ["before 2012-11-03T11:05:00Z", "before 2012-11-03T11:05:00Z"],
  ["after 2012-11-03T11:05:00-07:00", "after 2012-11-03T18:05:00Z"],
  [
    "(udp and port 514) or (tcp and port 8080)",
    "((proto 17 and port 514) or (proto 6 and port 8080))",
  ],
  ["vlan 200", "vlan 200"],
  ["mpls 16", "mpls 16"],
  ["mpls 1048575 and vlan 4095", "(mpls 1048575 and vlan 4095)"],
];

const STENOGRAPHER_INVALID: [string, RegExp][] = [
  ["host 1.2.3", /^Invalid address "1\.2\.3" at position 5/],
  ["net 1.2.3.4/44", /^Invalid prefix length "44" at position 12: expected 0-32$/],
  ["port 8 and port 77777", /^Invalid port 77777 at position 16: expected 0-65535$/],
  ["port 77777 and port 8", /^Invalid port 77777 at position 5: expected 0-65535$/],
  ["protocol -1", /^Invalid protocol "-1" at position 9/],
  ["protocol 256", /^Invalid protocol 256 at position 9: expected 0-255$/],
  ["last 4", /^Unknown word "last" at position 0: expected a primitive/],
  ["mpls 1048576", /^Invalid MPLS label 1048576 at position 5: expected 0-1048575$/],
];

Deno.test("parseQuery: stenographer's own valid and invalid queries", () => {
  for (const [text, expected] of STENOGRAPHER_VALID) {
    assert.equal(canon(text), expected, `query ${JSON.stringify(text)}`);
  }
  for (const [text, pattern] of STENOGRAPHER_INVALID) {
    assert.throws(
      () => parseQuery(text, { now: NOW }),
      (e) => e instanceof QueryError && pattern.test(e.message),
      `query ${JSON.stringify(text)}`,
    );
  }
});

// [query, position, message pattern]
const MALFORMED: [string, number, RegExp][] = [
  ["port=65555", 5, /^Invalid port 65555 at position 5: expected 0-65535$/],
  ["port 70000", 5, /^Invalid port 70000 at position 5: expected 0-65535$/],
  ["port http", 5, /^Invalid port "http" at position 5: expected a number 0-65535$/],
  ["portrange 2000-1000", 10, /^Invalid port range 2000-1000 at position 10: .*start above end/],
  ["portrange 1-70000", 12, /^Invalid port 70000 at position 12/],
  ["protocol=256", 9, /^Invalid protocol 256 at position 9: expected 0-255$/],
  ["ip proto 300", 9, /^Invalid protocol 300 at position 9: expected 0-255$/],
  ["proto=bogus", 6, /^Invalid protocol "bogus" at position 6: expected a number 0-255 or one of/],
  ["ip=1.2.3", 3, /^Invalid address "1\.2\.3" at position 3: expected an IPv4 or IPv6 address$/],
  ["host 1.2.3.256", 5, /^Invalid address "1\.2\.3\.256" at position 5/],
  ["host 01.2.3.4", 5, /^Invalid address "01\.2\.3\.4" at position 5/],
  ["host 2001:db8:::1", 5, /^Invalid address "2001:db8:::1" at position 5/],
  ["ip=fe80::1%eth0", 3, /^Invalid address "fe80::1%eth0" at position 3/],
  [
    "ip=1.1.1.9-1.1.1.1",
    3,
    /^Invalid range 1\.1\.1\.9-1\.1\.1\.1 at position 3: .*start above end/,
  ],
  ["ip=2001:db8::2-2001:db8::1", 3, /^Invalid range .* at position 3: .*start above end/],
  ["ip=1.1.1.1-::1", 3, /^Invalid range .* at position 3: expected both ends of the same family/],
  ["ip=1.1.1.1-1.1.1.x", 11, /^Invalid address "1\.1\.1\.x" at position 11/],
  ["net 10.0.0.0/33", 13, /^Invalid prefix length "33" at position 13: expected 0-32$/],
  ["net 2001:db8::/129", 15, /^Invalid prefix length "129" at position 15: expected 0-128$/],
  [
    "net 10.0.0.0 mask 255.0.255.0",
    18,
    /^Invalid netmask 255\.0\.255\.0 at position 18: expected contiguous/,
  ],
  ["net 10.0.0.0 mask ffff::", 18, /^Invalid netmask ffff:: at position 18: expected an IPv4 mask/],
  ["foo", 0, /^Unknown word "foo" at position 0: expected a primitive \(host, net/],
  ["host 1.1.1.1 bogus", 13, /^Unknown word "bogus" at position 13/],
  ["1.1.1.1", 0, /^Unknown word "1\.1\.1\.1" at position 0/],
  ["colour=red", 0, /^Unknown key "colour" at position 0: expected one of ip, port/],
  [
    "src host 1.1.1.1",
    0,
    /^Unsupported word "src" at position 0: flow keys do not record direction/,
  ],
  ["", 0, /^Empty query at position 0: expected at least one term$/],
  ["   ", 0, /^Empty query at position 0/],
  ["(host 1.1.1.1", 0, /^Unbalanced parenthesis at position 0: expected a matching "\)"/],
  ["tcp and (udp or (icmp)", 8, /^Unbalanced parenthesis at position 8/],
  [
    "host 1.1.1.1)",
    12,
    /^Unbalanced parenthesis at position 12: found "\)" without a matching "\("$/,
  ],
  ["()", 0, /^Empty parentheses at position 0: expected a term inside$/],
  [
    "host 1.1.1.1 and",
    13,
    /^Dangling operator "and" at position 13: expected a term after it, found end of query$/,
  ],
  ["tcp or", 4, /^Dangling operator "or" at position 4/],
  [
    "(tcp ||) udp",
    5,
    /^Dangling operator "\|\|" at position 5: expected a term after it, found "\)"$/,
  ],
  ["ip=1.1.1.1|", 10, /^Dangling operator "\|" at position 10/],
  ["tcp not", 4, /^Dangling operator "not" at position 4/],
  ["tcp !", 4, /^Dangling operator "!" at position 4/],
  ["and tcp", 0, /^Unexpected operator "and" at position 0: expected a term$/],
  ["| tcp", 0, /^Unexpected "\|" at position 0: expected a term$/],
  ["tcp and or udp", 8, /^Unexpected operator "or" at position 8: expected a term after "and"$/],
  ["tcp & udp", 4, /^Unexpected "&" at position 4: expected "&&"$/],
  ["ip=1.1.1.1 = 2", 11, /^Unexpected "=" at position 11/],
  ["host", 4, /^Missing an IPv4 or IPv6 address after "host" at position 4: .*found end of query$/],
  ["port and tcp", 5, /^Missing a port number after "port" at position 5/],
  ["last=", 5, /^Missing a value after "last=" at position 5/],
  [
    "last=4x",
    5,
    /^Invalid duration "4x" at position 5: expected a number followed by s, m, h or d/,
  ],
  ["last=4", 5, /^Invalid duration "4" at position 5/],
  ["last=99999999999d", 5, /^Invalid duration "99999999999d" at position 5: expected at most/],
  ["after 2026-13-01", 6, /^Invalid time "2026-13-01" at position 6: expected RFC 3339/],
  ["after 2026-02-29", 6, /^Invalid time "2026-02-29" at position 6/],
  ["before 2026-11-23T25:00:00Z", 7, /^Invalid time "2026-11-23T25:00:00Z" at position 7/],
  ["before 2026-11-23T10:00:00", 7, /^Invalid time .* at position 7/],
  ["after tomorrow", 6, /^Invalid time "tomorrow" at position 6/],
  ["after 3h", 8, /^Missing "ago" after duration 3h at position 8: expected "after 3h ago"/],
  ["after 3x ago", 6, /^Invalid duration "3x" at position 6/],
  ["vlan 4096", 5, /^Invalid VLAN id 4096 at position 5: expected 0-4095$/],
  [
    "(".repeat(65) + "tcp" + ")".repeat(65),
    64,
    /^Nesting too deep at position 64: expected at most 64/,
  ],
  ["!".repeat(65) + "tcp", 64, /^Nesting too deep at position 64/],
  [
    "tcp ".repeat(16400),
    65536,
    /^Query too long at position 65536: expected at most 65536 characters, found 65600$/,
  ],
];

Deno.test("parseQuery: malformed queries name the problem and its position", () => {
  assert.ok(MALFORMED.length >= 30);
  for (const [text, position, pattern] of MALFORMED) {
    const label = `query ${JSON.stringify(text.length > 40 ? text.slice(0, 40) + "..." : text)}`;
    let caught: unknown = null;
    try {
      parseQuery(text, { now: NOW });
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof QueryError, `${label} should throw QueryError, got ${caught}`);
    assert.match(caught.message, pattern, label);
    assert.equal(caught.position, position, `${label}: ${caught.message}`);
    assert.ok(caught.message.includes(`at position ${position}`), label);
    assert.ok(!caught.message.endsWith("."), label);
  }
});

Deno.test("address: parsing and RFC 5952 formatting", () => {
  assert.equal(parseIpv4("198.18.0.1"), 0xc6120001);
  assert.equal(parseIpv4("255.255.255.255"), 0xffffffff);
  for (const bad of ["1.2.3", "1.2.3.4.5", "1.2.3.-1", "1..2.3", "a.b.c.d", "1.2.3.04", ""]) {
    assert.equal(parseIpv4(bad), null, bad);
  }
  assert.deepEqual(parseIpv6("::"), [0, 0, 0, 0]);
  assert.deepEqual(parseIpv6("::1"), [0, 0, 0, 1]);
  assert.deepEqual(parseIpv6("1::"), [0x00010000, 0, 0, 0]);
  assert.deepEqual(parseIpv6("::ffff:198.18.0.1"), [0, 0, 0xffff, 0xc6120001]);
  assert.deepEqual(parseIpv6("1:2:3:4:5:6:7:8"), [0x00010002, 0x00030004, 0x00050006, 0x00070008]);
  for (
    const bad of ["1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", ":1::", "1:2:3:4:5:6:7::8", "::1.2.3"]
  ) {
    assert.equal(parseIpv6(bad), null, bad);
  }
  const cases: [string, string][] = [
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["fe80::", "fe80::"],
  ];
  for (const [input, out] of cases) {
    const a = parseAddress(input);
    assert.ok(a !== null && a.family === 6);
    assert.equal(formatAddress(6, a.words), out);
  }
  assert.equal(formatAddress(4, [0xc6120001, 0, 0, 0]), "198.18.0.1");
});

Deno.test("address: prefixes, masks and range decomposition", () => {
  assert.equal(maskToPrefix(4, [0xffffff00, 0, 0, 0]), 24);
  assert.equal(maskToPrefix(4, [0, 0, 0, 0]), 0);
  assert.equal(maskToPrefix(4, [0xff00ff00, 0, 0, 0]), -1);
  assert.equal(maskToPrefix(6, [0xffffffff, 0x80000000, 0, 0]), 33);
  assert.equal(
    rangePrefix({ family: 4, from: [0x0a000000, 0, 0, 0], to: [0x0affffff, 0, 0, 0] }),
    8,
  );
  assert.equal(
    rangePrefix({ family: 4, from: [0x0a000001, 0, 0, 0], to: [0x0affffff, 0, 0, 0] }),
    -1,
  );
  assert.equal(
    rangePrefix({ family: 6, from: [0, 0, 0, 0], to: [~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0] }),
    0,
  );
  const blocks = rangeToCidrs(
    { family: 4, from: [0x01010100, 0, 0, 0], to: [0x010102c8, 0, 0, 0] },
    { limit: 64 },
  );
  assert.deepEqual(
    blocks?.map((b) => `${formatAddress(4, b.words)}/${b.prefix}`),
    ["1.1.1.0/24", "1.1.2.0/25", "1.1.2.128/26", "1.1.2.192/29", "1.1.2.200/32"],
  );
  // The worst IPv6 range needs 254 blocks.
  const all: Words = [~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0];
  const worst = {
    family: 6,
    from: [0, 0, 0, 1],
    to: [all[0], all[1], all[2], all[3] - 1],
  } as const;
  assert.equal(rangeToCidrs(worst, { limit: 1000 })?.length, 254);
  assert.equal(rangeToCidrs(worst, { limit: 64 }), null);
});

Deno.test("formatTime: microsecond round trip", () => {
  assert.equal(formatTime(0), "1970-01-01T00:00:00Z");
  assert.equal(formatTime(1.5), "1970-01-01T00:00:01.5Z");
  assert.equal(formatTime(1_800_000_000.000001), "2027-01-15T08:00:00.000001Z");
  const now = 1_763_900_000.123;
  const q = parseQuery(`after ${formatTime(now)}`);
  assert.ok(q.type === "time" && q.at === now);
});

Deno.test("parseQuery: random input only ever throws QueryError with a position inside the text", () => {
  let s = 12345;
  const rand = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 4294967296;
  };
  const pieces = [
    "host",
    "net",
    "port",
    "ip",
    "ip6",
    "proto",
    "tcp",
    "not",
    "and",
    "or",
    "vlan",
    "after",
    "before",
    "ago",
    "mask",
    "last",
    "=",
    "|",
    "||",
    "&&",
    "&",
    "!",
    "(",
    ")",
    " ",
    " ",
    "1.2.3.4",
    "::1",
    "10.0.0.0/8",
    "1.1.1.1-2.2.2.2",
    "80",
    "65536",
    "3h",
    "2026-11-23",
    "x",
    "-",
    "/",
    ":",
    "portrange",
    "0-9",
    "ffff::",
    "\t",
    "é",
    "%",
  ];
  let ok = 0;
  for (let i = 0; i < 20000; i++) {
    let text = "";
    const n = 1 + Math.floor(rand() * 8);
    for (let j = 0; j < n; j++) text += pieces[Math.floor(rand() * pieces.length)];
    try {
      const q = parseQuery(text, { now: NOW });
      assert.deepEqual(parseQuery(formatQuery(q), { now: NOW }), q, text);
      ok++;
    } catch (e) {
      assert.ok(e instanceof QueryError, `${JSON.stringify(text)}: ${e}`);
      assert.ok(e.position >= 0 && e.position <= text.length, `${JSON.stringify(text)}: ${e}`);
      assert.ok(/^[A-Z]/.test(e.message) && e.message.includes(`at position ${e.position}`));
    }
  }
  assert.ok(ok > 100, `only ${ok} random queries parsed`);
});
