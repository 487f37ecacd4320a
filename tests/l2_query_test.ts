/**
 * Non-IP flows reachable by a query: `arp`, `stp`, `ether proto N`, `ether host MAC`, `ethertype=`,
 * `mac=` on tcpdump corpus captures with ARP, STP and LLDP equal tcpdump's selection with the same
 * filter (`ether host` restricted to non-IP frames, the only ones keyed by MAC); /flows shows L2
 * flows as MAC pair + EtherType name, src being the sender of the flow's first packet.
 */
import assert from "node:assert/strict";
import { cutcap, tcpdumpPackets } from "./support/oracle.ts";
import { assertSamePackets, oraclePackets, postQuery } from "./support/query_server.ts";
import type { FlowRecord } from "../src/query/flows.ts";
import { type ServerProcess, startServe } from "./support/process.ts";

const CORPUS = new URL("../../shared/corpus/tcpdump/", import.meta.url).pathname;
const FILES = [
  `${CORPUS}/dhcp-rfc4388.pcap`, // ARP among DHCP/IP
  `${CORPUS}/isakmp4500.pcap`, // ARP replies before requests
  `${CORPUS}/802.1D_spanning_tree.pcap`, // 802.3 LLC STP
  `${CORPUS}/spb_bpduv4.pcap`,
  `${CORPUS}/dcb_qcn.pcap`, // LLDP among IP
  `${CORPUS}/lldp-app-priority.pcap`,
  new URL("../../shared/community-id/pcaps/arp.pcap", import.meta.url).pathname,
];

/** Query → the tcpdump filter selecting the same packets. */
const CASES: [string, string][] = [
  ["arp", "arp"],
  ["ethertype=arp", "arp"],
  ["ether proto 0x0806", "ether proto 0x0806"],
  ["stp", "stp"],
  ["lldp", "ether proto 0x88cc"],
  ["ether proto 0x88cc or stp", "ether proto 0x88cc or stp"],
  ["ethertype=35020", "ether proto 0x88cc"],
  ["ether host 74:83:ef:07:d0:a9", "ether host 74:83:ef:07:d0:a9 and not ip and not ip6"],
  ["mac=10:00:00:64:64:23", "ether host 10:00:00:64:64:23 and not ip and not ip6"],
  ["ether host 00:19:06:ea:b8:85 and stp", "ether host 00:19:06:ea:b8:85 and stp"],
  ["ether src 00:19:06:ea:b8:85", "ether src 00:19:06:ea:b8:85 and not ip and not ip6"],
  ["ether dst 01:80:c2:00:00:0e", "ether dst 01:80:c2:00:00:0e and not ip and not ip6"],
  ["arp and not ether host ff:ff:ff:ff:ff:ff", "arp and not ether dst ff:ff:ff:ff:ff:ff"],
];

let work = "";
let server: ServerProcess | undefined;

async function setUp(): Promise<ServerProcess> {
  if (server) return server;
  work = await Deno.makeTempDir({ prefix: "cutcap-l2-" });
  for (const file of FILES) {
    const r = await cutcap([
      "--read",
      file,
      "--out",
      `${work}/out`,
      "--listen",
      "off",
      "--byte-cutoff",
      "0",
    ]);
    assert.equal(r.code, 0, r.stderr);
  }
  server = await startServe(`${work}/out`);
  return server;
}

for (const [query, filter] of CASES) {
  Deno.test(`L2: ${query} selects what tcpdump's "${filter}" does`, async () => {
    const s = await setUp();
    const expected = await oraclePackets(FILES, filter);
    assert.ok(expected.length > 0, `tcpdump finds packets for ${filter}`);
    const answer = `${work}/answer.pcap`;
    const r = await postQuery(s.url, query, answer);
    assert.equal(r.status, 200, r.text);
    assertSamePackets(await tcpdumpPackets(answer), expected, query);
  });
}

Deno.test("L2: /flows shows MAC pair + EtherType name, src = sender of the first packet", async () => {
  const s = await setUp();
  const res = await fetch(`${s.url}/flows?q=${encodeURIComponent("arp or stp or lldp")}`);
  assert.equal(res.status, 200);
  const flows = await res.json() as FlowRecord[];
  const find = (a: string, b: string) =>
    flows.find((f) => (f.src === a && f.dst === b) || (f.src === b && f.dst === a));
  // isakmp4500: the first ARP frame between these two is the reply from ...:23.
  const reply = find("10:00:00:64:64:23", "10:00:00:de:ad:ba");
  assert.ok(reply);
  assert.equal(reply.src, "10:00:00:64:64:23");
  assert.equal(reply.etherTypeName, "arp");
  assert.equal(reply.communityId, "");
  assert.equal(reply.srcPort, 0);
  // dhcp-rfc4388: the request from a6:... comes first.
  assert.equal(find("a6:82:4b:c9:a1:a7", "74:83:ef:07:d0:a9")?.src, "a6:82:4b:c9:a1:a7");
  const stp = find("00:19:06:ea:b8:85", "01:80:c2:00:00:00");
  assert.equal(stp?.etherTypeName, "stp");
  assert.equal(stp?.src, "00:19:06:ea:b8:85");
  assert.ok(flows.some((f) => f.etherTypeName === "lldp"));
  const table = await cutcap(["flows", "--server", s.url, "arp"]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /\sarp\s+10:00:00:64:64:23\s+10:00:00:de:ad:ba\s/);
  assert.doesNotMatch(table.stdout, /:2054\b/);
});

Deno.test("L2: bad MAC and EtherType are refused with the position", async () => {
  const s = await setUp();
  for (
    const [query, message] of [
      ["ether host 00:11:22", /Invalid MAC address "00:11:22" at position 11/],
      ["ethertype=0x1ffff", /Invalid EtherType "0x1ffff" at position 10/],
      ["ether foo", /Unknown word "foo" after "ether" at position 6/],
    ] as const
  ) {
    const res = await fetch(`${s.url}/flows?q=${encodeURIComponent(query)}`);
    assert.equal(res.status, 400, query);
    assert.match(await res.text(), message);
  }
});

Deno.test("L2 query tests clean up", async () => {
  if (server) assert.equal(await server.stop(), 0);
  if (work) await Deno.remove(work, { recursive: true });
});
