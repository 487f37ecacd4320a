/**
 * stenographer's meanings over an archive of awkward captures (issue 13): QinQ and deeper VLAN
 * stacks, MPLS label stacks, IPv6 extension headers, IPv4 and IPv6 later fragments, a transport
 * header cut by the snaplen, a real port 0, out-of-order times and mixed link types (Ethernet,
 * Linux cooked at micro- and nanosecond precision) — hand-built frames plus captures from
 * tcpdump's corpus, replayed with `cutcap --read` into one archive.
 *
 * The oracle is tshark with IP reassembly off: its display filters see every VLAN tag
 * (`vlan.id`), every MPLS label (`mpls.label`) and ports past IPv6 extension headers, which is
 * what stenographer indexes; tcpdump's BPF sees only the outermost tag and label and no ports
 * after an extension header, so it cannot judge these. Packets are compared by time, wire length
 * and an MD5 of their captured bytes, over every link type of the answer.
 */
import assert from "node:assert/strict";
import { cutcap, run } from "./support/oracle.ts";
import { CORPUS_DIR } from "./support/corpus.ts";
import { assertAnswerInTimeOrder, replayFiles } from "./support/query_server.ts";
import {
  type CraftedRecord,
  ethernet,
  fragmentHeader,
  ipv4,
  ipv6,
  mpls,
  pcapFile,
  sll,
  tcp,
  udp,
} from "./support/pcap_craft.ts";
import { type FileIndex, readFileIndex } from "../src/index/index_reader.ts";
import { INDEX_SUFFIX } from "../src/archive/naming.ts";
import { parseQuery } from "../src/query/parse.ts";
import { selectPackets } from "../src/query/select.ts";
import { startServe } from "./support/process.ts";

const T0 = 1_800_000_000_000_000; // µs
const Q = 0x88a8;
const V = 0x8100;

/** Hand-built Ethernet frames, listed out of time order on purpose. */
function ethernetRecords(): CraftedRecord[] {
  const v4 = (src: string, dst: string, proto: number, l4: Uint8Array, frag = 0) =>
    ipv4(src, dst, proto, l4, { fragment: frag });
  const frames: [number, Uint8Array, number?][] = [
    [5, ethernet(0x0800, v4("198.18.5.1", "198.18.5.2", 17, udp(0, 5000)))], // real port 0
    [3, ethernet(0x0800, v4("198.18.5.1", "198.18.5.2", 17, new Uint8Array(16), 100))],
    [9, ethernet(0x0800, v4("198.18.5.3", "198.18.5.4", 6, tcp(80, 40000))), 14 + 20 + 2],
    [
      1,
      ethernet(
        0x86dd,
        ipv6("2001:db8::5:1", "2001:db8::5:2", 17, udp(7, 8), [[44, fragmentHeader(20, false)]]),
      ),
    ],
    [12, ethernet(0x0800, v4("198.18.6.1", "198.18.6.2", 17, udp(1000, 53)), [[Q, 100], [V, 200]])],
    [
      11,
      ethernet(0x0800, v4("198.18.6.3", "198.18.6.4", 6, tcp(443, 41000)), [[Q, 300], [V, 100]]),
    ],
    [
      20,
      ethernet(0x0800, v4("198.18.6.5", "198.18.6.6", 17, udp(1001, 53)), [[Q, 10], [V, 20], [
        V,
        200,
      ]]),
    ],
    [15, ethernet(0x0800, v4("198.18.6.7", "198.18.6.8", 6, tcp(80, 42000)), [[V, 200]])],
    [14, ethernet(0x8847, mpls([16, 1000], v4("198.18.7.1", "198.18.7.2", 17, udp(53, 1002))))],
    [
      30,
      ethernet(0x8847, mpls([17], ipv6("2001:db8::7:1", "2001:db8::7:2", 6, tcp(443, 43000)))),
    ],
    [
      25,
      ethernet(0x8847, mpls([16], v4("198.18.7.3", "198.18.7.4", 1, new Uint8Array(8))), [[
        V,
        300,
      ]]),
    ],
    [
      40,
      ethernet(0x8847, mpls([99, 1000, 16], v4("198.18.7.5", "198.18.7.6", 6, tcp(8080, 80)))),
    ],
    [
      22,
      ethernet(
        0x86dd,
        ipv6("2001:db8::8:1", "2001:db8::8:2", 17, udp(1003, 53), [[0, new Uint8Array(6)]]),
      ),
    ],
    [2, ethernet(0x0800, v4("198.18.9.1", "198.18.9.2", 1, new Uint8Array(8)))],
    [35, ethernet(0x0800, v4("198.18.9.3", "198.18.9.4", 6, tcp(1234, 80)))],
  ];
  return frames.map(([ms, frame, caplen]) => ({ us: T0 + ms * 1000, frame, caplen }));
}

function sllRecords(): CraftedRecord[] {
  return [
    { us: T0 + 4000, frame: sll(0x0800, ipv4("198.18.10.1", "198.18.10.2", 17, udp(53, 1100))) },
    { us: T0 + 13000, frame: sll(0x0800, ipv4("198.18.10.3", "198.18.10.4", 6, tcp(80, 1101))) },
    { us: T0 + 8000, frame: sll(0x0800, ipv4("198.18.6.1", "198.18.10.5", 17, udp(0, 1102))) },
  ];
}

const CORPUS = [
  "802.1ad_QinQ.pcap", // QinQ (ARP inside 200/2001)
  "ipv6-routing-header.pcap", // IPv6 routing header, then ICMPv6 or UDP
  "forces2.pcap", // Linux cooked, times go back
  "tcp-handshake-nano.pcap", // Linux cooked, nanoseconds
  "of10_pf5240.pcap", // Ethernet, times go back
  "ip6_frag_asan.pcap", // an IPv6 fragment
  "kday4.pcap", // snaplen 511
].map((f) => CORPUS_DIR + f);

/** tshark's filter for a VLAN id in any tag. */
function tag(id: number): string {
  return `(vlan.id == ${id} || ieee8021ad.id == ${id})`;
}

/** The cutcap query and the tshark display filter that means the same (stenographer's meaning). */
const QUERIES: [string, string][] = [
  ["ip or not ip", "frame"],
  // A later fragment and a cut-off header have no port; a real port 0 is one.
  ["port 0", "(udp.port == 0 || tcp.port == 0) && !icmp && !icmpv6"],
  ["port 53", "(udp.port == 53 || tcp.port == 53) && !icmp && !icmpv6"],
  ["port 5642", "udp.port == 5642"], // after an IPv6 routing header
  ["tcp and port 80", "tcp.port == 80 && !icmp"],
  ["host 198.18.6.1", "ip.addr == 198.18.6.1"],
  ["ip6", "ipv6"],
  ["icmp", "icmp && !icmpv6"],
  // Any VLAN tag of a frame (QinQ inner, third tag) and any MPLS label of the stack. tshark
  // names an 802.1ad (0x88a8) tag's id ieee8021ad.id, an 802.1Q one's vlan.id.
  ["vlan 200", tag(200)],
  ["vlan 2001", tag(2001)], // corpus QinQ: inner tag of ARP frames
  ["vlan 100 and udp", `${tag(100)} && udp`],
  ["mpls 16", "mpls.label == 16"],
  ["mpls 1000 and port 53", "mpls.label == 1000 && udp.port == 53"],
  ["vlan 300 and mpls 16", `${tag(300)} && mpls.label == 16`],
  ["not vlan 200 and (vlan 20 or mpls 17)", `!${tag(200)} && (${tag(20)} || mpls.label == 17)`],
];

interface Row {
  line: string;
  time: number;
}

/** tshark's view of a capture: time, wire length and MD5 of the bytes of each selected packet. */
async function tsharkRows(path: string, filter: string): Promise<Row[]> {
  const text = await run("tshark", [
    "-r",
    path,
    "-o",
    "ip.defragment:FALSE",
    "-o",
    "ipv6.defragment:FALSE",
    "-o",
    "frame.generate_md5_hash:TRUE",
    "-Y",
    filter,
    "-T",
    "fields",
    "-e",
    "frame.time_epoch",
    "-e",
    "frame.len",
    "-e",
    "frame.md5_hash",
  ]);
  return text.split("\n").filter((l) => l !== "").map((line) => {
    // Microseconds: the archive keeps a nanosecond input's times to the microsecond.
    const [time, len, md5] = line.split("\t");
    const us = Math.floor(Number(time.slice(0, time.indexOf(".") + 7)) * 1e6);
    return { line: `${us} ${len} ${md5}`, time: us };
  });
}

Deno.test("stenographer's meanings over QinQ, MPLS, fragments, cut headers and mixed links", async (t) => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-steno-" });
  const out = `${work}/archive`;
  const inputs = [`${work}/crafted_eth.pcap`, `${work}/crafted_sll.pcap`, ...CORPUS];
  try {
    await Deno.writeFile(inputs[0], pcapFile(1, 65535, ethernetRecords()));
    await Deno.writeFile(inputs[1], pcapFile(113, 65535, sllRecords()));
    await replayFiles(inputs, out, ["--compress", "zstd"]);
    // One file holding every input (each keeps its link type as a pcapng interface): one tshark
    // run per query for the oracle.
    const merged = `${work}/inputs.pcapng`;
    await run("mergecap", ["-a", "-w", merged, ...inputs]);
    const server = await startServe(out);
    try {
      for (const [query, filter] of QUERIES) {
        await t.step(query, async () => {
          const response = await fetch(`${server.url}/query`, { method: "POST", body: query });
          assert.equal(response.status, 200);
          const answer = `${work}/answer.pcapng`;
          await Deno.writeFile(answer, new Uint8Array(await response.arrayBuffer()));
          await assertAnswerInTimeOrder(answer, query);
          const expected = (await tsharkRows(merged, filter)).map((r) => r.line);
          const got = (await tsharkRows(answer, "frame")).map((r) => r.line);
          assert.ok(expected.length > 0, `${query} selects something`);
          assert.deepEqual(got.sort(), expected.sort(), `${query} (tshark: ${filter})`);
        });
      }

      await t.step("mixed link types: pcapng, one interface per link type/snaplen", async () => {
        const response = await fetch(`${server.url}/query`, { method: "POST", body: "port 53" });
        assert.equal(response.headers.get("content-type"), "application/x-pcapng");
        const answer = `${work}/mixed.pcapng`;
        await Deno.writeFile(answer, new Uint8Array(await response.arrayBuffer()));
        const info = await run("capinfos", [answer]);
        assert.match(info, /File type:\s+Wireshark\/\.\.\. - pcapng/);
        const interfaces = [...info.matchAll(/Encapsulation = ([^\n]+)/g)].map((m) => m[1]);
        assert.deepEqual(
          interfaces.sort(),
          ["Ethernet (1 - ether)", "Linux cooked-mode capture v1 (25 - linux-sll)"],
          info,
        );
        assert.match(info, /Strict time order:\s+True/);
      });

      await t.step("pcap when asked: files of other link types left out, and said", async () => {
        const response = await fetch(`${server.url}/query?format=pcap`, {
          method: "POST",
          body: "port 53",
        });
        assert.equal(response.headers.get("content-type"), "application/vnd.tcpdump.pcap");
        assert.match(
          response.headers.get("x-cutcap-left-out") ?? "",
          /link types other than the answer's \(the time range holds EN10MB, LINUX_SLL\)/,
        );
        await response.body?.cancel();
        const cli = await cutcap(["read", "--server", server.url, "port 53", "-nn"]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.match(cli.stderr, /the answer leaves out files of link types other than/);
      });

      await t.step("pcapng on request, read by tcpdump", async () => {
        const query = "host 198.18.9.3 or host 198.18.6.7"; // Ethernet packets only
        const fetchTo = async (path: string, params: string, headers: Record<string, string>) => {
          const r = await fetch(`${server.url}/query${params}`, {
            method: "POST",
            body: query,
            headers,
          });
          await Deno.writeFile(path, new Uint8Array(await r.arrayBuffer()));
          return r.headers.get("content-type");
        };
        const pcap = `${work}/asked.pcap`;
        const ng = `${work}/asked.pcapng`;
        assert.equal(await fetchTo(pcap, "?format=pcap", {}), "application/vnd.tcpdump.pcap");
        assert.equal(
          await fetchTo(ng, "", { accept: "application/x-pcapng" }),
          "application/x-pcapng",
        );
        const cli = await cutcap([
          "query",
          "--server",
          server.url,
          "--pcapng",
          "-w",
          `${work}/cli.pcapng`,
          query,
        ]);
        assert.equal(cli.code, 0, cli.stderr);
        const read = async (f: string) => await run("tcpdump", ["-r", f, "-tt", "-nn", "-xx"]);
        const viaPcap = await read(pcap);
        assert.equal(viaPcap.split("\n").filter((l) => /^\d/.test(l)).length, 2);
        assert.equal(await read(ng), viaPcap);
        assert.equal(await read(`${work}/cli.pcapng`), viaPcap);
        const bad = await fetch(`${server.url}/query?format=pcapx`, {
          method: "POST",
          body: "tcp",
        });
        assert.equal(bad.status, 400);
        assert.match(await bad.text(), /^Invalid format "pcapx": expected pcap or pcapng/);
      });
    } finally {
      assert.equal(await server.stop(), 0, server.log());
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

/**
 * One TCP flow (outer 802.1ad tag 500 on every frame) whose packets differ: MPLS label 16 one way
 * and 17 the other, a second label (1000) on one packet, inner VLAN 601 or 602, one packet
 * without MPLS (penultimate-hop popping). A second flow carries the same tags on every packet
 * (decided per flow), a third none. Every frame but the third flow's has two VLAN tags, so
 * tcpdump's `vlan and vlan and mpls N` reads the labels where cutcap does.
 */
function mixedTagRecords(): CraftedRecord[] {
  const a = "198.18.11.1", b = "198.18.11.2";
  const out = (vid: number, labels: number[]) =>
    ethernet(0x8847, mpls(labels, ipv4(a, b, 6, tcp(40000, 80))), [[Q, 500], [V, vid]]);
  const back = (vid: number, labels: number[]) =>
    ethernet(0x8847, mpls(labels, ipv4(b, a, 6, tcp(80, 40000))), [[Q, 500], [V, vid]]);
  const uniform = (src: string, dst: string, sport: number, dport: number) =>
    ethernet(0x8847, mpls([20], ipv4(src, dst, 17, udp(sport, dport))), [[Q, 700], [V, 701]]);
  const frames: Uint8Array[] = [
    out(601, [16]),
    back(602, [17]),
    uniform("198.18.12.1", "198.18.12.2", 5000, 53),
    out(601, [16, 1000]),
    back(601, [17]),
    ethernet(0x0800, ipv4(b, a, 6, tcp(80, 40000)), [[Q, 500], [V, 602]]),
    uniform("198.18.12.2", "198.18.12.1", 53, 5000),
    ethernet(0x0800, ipv4("198.18.13.1", "198.18.13.2", 17, udp(1, 2))),
    out(602, [16]),
    back(602, [17, 1000]),
  ];
  return frames.map((frame, i) => ({ us: T0 + 100_000 + i * 1000, frame }));
}

/** cutcap query, tshark filter (stenographer's meaning), tcpdump filter where BPF means the same. */
const TAG_QUERIES: [string, string, string?][] = [
  ["mpls 16", "mpls.label == 16", "vlan and vlan and mpls 16"],
  ["mpls 17", "mpls.label == 17", "vlan and vlan and mpls 17"],
  ["mpls 1000", "mpls.label == 1000", "vlan and vlan and mpls and mpls 1000"],
  ["mpls 20", "mpls.label == 20", "vlan and vlan and mpls 20"],
  ["vlan 601", tag(601), "vlan and vlan 601"],
  ["vlan 602", tag(602), "vlan and vlan 602"],
  ["vlan 500", tag(500), "vlan 500"],
  ["not mpls 16", "!(mpls.label == 16)", "not (vlan and vlan and mpls 16)"],
  ["mpls 17 and vlan 602", `mpls.label == 17 && ${tag(602)}`],
  ["mpls 16 or vlan 602", `mpls.label == 16 || ${tag(602)}`],
  ["not vlan 601 and host 198.18.11.1", `!${tag(601)} && ip.addr == 198.18.11.1`],
  [
    `mpls 17 and after ${new Date((T0 + 103_000) / 1000).toISOString()}`,
    `mpls.label == 17 && frame.time_epoch >= ${(T0 + 103_000) / 1e6}`,
  ],
];

Deno.test("vlan N / mpls N are exact per packet when a flow's tags differ", async (t) => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-tags-" });
  const out = `${work}/archive`;
  const input = `${work}/tags.pcap`;
  try {
    await Deno.writeFile(input, pcapFile(1, 65535, mixedTagRecords()));
    for (const compress of ["none", "zstd"]) {
      await replayFiles([input], `${out}-${compress}`, ["--compress", compress]);
    }

    await t.step("only the flow whose tags differ is decided per packet", async () => {
      const [index] = await indexesUnder(`${out}-none`);
      const selection = (q: string) => selectPackets(index, parseQuery(q));
      const mixed = selection("mpls 16");
      // Every packet of the 198.18.11.x flow (7), none of the others.
      assert.equal(mixed.check?.flow.filter((f) => f >= 0).length, 7);
      assert.equal(mixed.offsets.length, 7);
      assert.equal(selection("mpls 20").check, undefined); // every packet of its flow has 20
      assert.equal(selection("mpls 20").offsets.length, 2);
      assert.equal(selection("mpls 99").offsets.length, 0); // no flow lists 99
      assert.equal(selection("vlan 500").check, undefined); // the outermost tag is the key's
    });

    for (const compress of ["none", "zstd"]) {
      const server = await startServe(`${out}-${compress}`);
      try {
        for (const [query, filter, bpf] of TAG_QUERIES) {
          await t.step(`${compress}: ${query}`, async () => {
            const response = await fetch(`${server.url}/query`, { method: "POST", body: query });
            assert.equal(response.status, 200);
            const answer = `${work}/answer.pcap`;
            await Deno.writeFile(answer, new Uint8Array(await response.arrayBuffer()));
            await assertAnswerInTimeOrder(answer, query);
            const got = (await tsharkRows(answer, "frame")).map((r) => r.line);
            const expected = (await tsharkRows(input, filter)).map((r) => r.line);
            assert.ok(expected.length > 0, `${query} selects something`);
            // Same packets in the same (time) order.
            assert.deepEqual(got, expected, `${query} (tshark: ${filter})`);
            if (bpf === undefined) return;
            const selected = `${work}/tcpdump.pcap`;
            await run("tcpdump", ["-r", input, "-w", selected, bpf]);
            const byTcpdump = (await tsharkRows(selected, "frame")).map((r) => r.line);
            assert.deepEqual(got, byTcpdump, `${query} (tcpdump: ${bpf})`);
          });
        }
        await t.step(`${compress}: a limit counts the packets the frames decided`, async () => {
          const response = await fetch(`${server.url}/query?limit=2`, {
            method: "POST",
            body: "mpls 17",
          });
          const answer = `${work}/limited.pcap`;
          await Deno.writeFile(answer, new Uint8Array(await response.arrayBuffer()));
          const got = (await tsharkRows(answer, "frame")).map((r) => r.line);
          const expected = (await tsharkRows(input, "mpls.label == 17")).map((r) => r.line);
          assert.deepEqual(got, expected.slice(0, 2));
        });
      } finally {
        assert.equal(await server.stop(), 0, server.log());
      }
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

/** The indexes of an archive's files. */
async function indexesUnder(dir: string): Promise<FileIndex[]> {
  const found: FileIndex[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...await indexesUnder(path));
    else if (path.endsWith(INDEX_SUFFIX)) found.push(readFileIndex(path));
  }
  return found;
}
