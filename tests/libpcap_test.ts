// ffi/libpcap.ts against independent oracles: tcpdump (-tt -nn -xx) for packet counts, timestamps
// and bytes, tshark for captured and wire lengths.
import assert from "node:assert/strict";
import {
  defaultInterface,
  findAllDevs,
  libpcapVersion,
  loadLibpcap,
  PcapHandle,
} from "../ffi/libpcap.ts";
import { CORPUS_DIR } from "./support/corpus.ts";

const CORPUS = CORPUS_DIR.slice(0, -1);
/**
 * A mix: Ethernet (one record longer than the file's snaplen, which libpcap clips), pcapng,
 * big-endian 802.15.4 with records clipped to a 7-byte snaplen, raw IPv6, radiotap, cooked.
 */
const FILES = [
  "pim-packet-assortment.pcap",
  "ptp_ethernet.pcap",
  "of13_ericsson.pcapng",
  "802_15_4_beacon.pcap",
  "LINKTYPE_IPV6.pcap",
  "ieee802.11_rx-stbc.pcap",
  "RADIUS-RFC4675.pcap",
  "babel.pcap",
  "ahcp.pcapng",
];

interface Packet {
  sec: number;
  frac: number;
  caplen: number;
  len: number;
  hex: string;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * Timestamps, bytes and captured length per packet from tcpdump (its -xx dump has exactly the
 * captured bytes libpcap delivered, after libpcap clips records to the snaplen), wire length from
 * tshark (which reports the record's own caplen unclipped, so it is not used for caplen).
 */
async function oracle(path: string, nano = false): Promise<Packet[]> {
  const args = ["-r", path, "-tt", "-nn", "-xx"];
  if (nano) args.push("--time-stamp-precision=nano");
  const text = await run("tcpdump", args);
  const digits = nano ? 9 : 6;
  const start = new RegExp(`^(\\d+)\\.(\\d{${digits}}) `);
  const packets: Packet[] = [];
  for (const line of text.split("\n")) {
    const m = start.exec(line);
    if (m !== null) {
      packets.push({ sec: Number(m[1]), frac: Number(m[2]), caplen: -1, len: -1, hex: "" });
      continue;
    }
    const h = /^\t0x[0-9a-f]{4}:((?: +[0-9a-f]{2,4})+)/.exec(line);
    if (h !== null && packets.length > 0) packets[packets.length - 1].hex += h[1].replace(/ /g, "");
  }
  const fields = await run("tshark", [
    "-r",
    path,
    "-T",
    "fields",
    "-e",
    "frame.cap_len",
    "-e",
    "frame.len",
  ]);
  const rows = fields.trim().split("\n").filter((r) => r !== "");
  assert.equal(rows.length, packets.length, `${path}: tshark and tcpdump packet counts`);
  rows.forEach((row, i) => {
    packets[i].caplen = packets[i].hex.length / 2;
    packets[i].len = Number(row.split("\t")[1]);
  });
  return packets;
}

function hexOf(h: PcapHandle): string {
  let s = "";
  for (let i = h.offset; i < h.offset + h.caplen; i++) s += h.data[i].toString(16).padStart(2, "0");
  return s;
}

function readAll(h: PcapHandle): Packet[] {
  const got: Packet[] = [];
  for (;;) {
    const rc = h.next();
    if (rc === -2) break;
    assert.equal(rc, 1, `next() returned ${rc}: ${h.lastError()}`);
    got.push({ sec: h.tsSec, frac: h.tsFrac, caplen: h.caplen, len: h.wireLen, hex: hexOf(h) });
  }
  return got;
}

for (const name of FILES) {
  Deno.test(`offline ${name}: count, timestamps, lengths and bytes match tcpdump and tshark`, async () => {
    const path = `${CORPUS}/${name}`;
    const want = await oracle(path);
    assert.ok(want.length > 0);
    const h = PcapHandle.openOffline(path);
    try {
      const got = readAll(h);
      assert.equal(got.length, want.length, "packet count");
      for (let i = 0; i < want.length; i++) {
        assert.deepEqual(got[i], want[i], `${name} packet ${i + 1}`);
      }
    } finally {
      h.close();
    }
  });
}

Deno.test("offline: link type and snapshot length come from the file header", async () => {
  const path = `${CORPUS}/pim-packet-assortment.pcap`;
  const h = PcapHandle.openOffline(path);
  try {
    assert.equal(h.linkType(), 1);
    const bytes = await Deno.readFile(path);
    assert.equal(h.snaplen(), new DataView(bytes.buffer).getUint32(16, true));
    assert.equal(h.selectableFd() >= 0, true); // a readable file descriptor for savefiles
    assert.throws(() => h.stats(), /^Error: Cannot read statistics of .*pim-packet-assortment/);
  } finally {
    h.close();
  }
});

/** A pcap file with the given packets; `nano` writes the nanosecond magic. */
function writePcap(path: string, packets: Uint8Array[], opts: { nano?: boolean } = {}): number[] {
  const total = 24 + packets.reduce((n, p) => n + 16 + p.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, opts.nano ? 0xa1b23c4d : 0xa1b2c3d4, true);
  dv.setUint16(4, 2, true);
  dv.setUint16(6, 4, true);
  dv.setUint32(16, 262144, true);
  dv.setUint32(20, 1, true);
  const fracs: number[] = [];
  let at = 24;
  packets.forEach((p, i) => {
    const frac = opts.nano ? 123456789 - i : 654321 - i;
    fracs.push(frac);
    dv.setUint32(at, 1700000000 + i, true);
    dv.setUint32(at + 4, frac, true);
    dv.setUint32(at + 8, p.length, true);
    dv.setUint32(at + 12, p.length + 4, true);
    out.set(p, at + 16);
    at += 16 + p.length;
  });
  Deno.writeFileSync(path, out);
  return fracs;
}

function pattern(size: number, seed: number): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < size; i++) p[i] = (i * 31 + seed * 7) & 0xff;
  return p;
}

Deno.test("offline: packets larger than libpcap's buffer (buffer reallocated) read correctly", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-pcap-" });
  try {
    const sizes = [60, 70000, 61, 200000, 1514, 262144, 62];
    const packets = sizes.map((s, i) => pattern(s, i));
    writePcap(`${dir}/grow.pcap`, packets);
    const h = PcapHandle.openOffline(`${dir}/grow.pcap`);
    try {
      for (let i = 0; i < packets.length; i++) {
        assert.equal(h.next(), 1);
        assert.equal(h.caplen, sizes[i]);
        assert.equal(h.wireLen, sizes[i] + 4);
        assert.equal(h.tsSec, 1700000000 + i);
        const got = h.data.subarray(h.offset, h.offset + h.caplen);
        assert.ok(got.every((b, j) => b === packets[i][j]), `packet ${i} bytes`);
      }
      assert.equal(h.next(), -2);
      assert.equal(h.next(), -2);
    } finally {
      h.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("offline: nanosecond mode gives nanosecond fractions", async () => {
  const path = `${CORPUS}/ptp_ethernet.pcap`;
  const want = await oracle(path, true);
  const h = PcapHandle.openOffline(path, { nanosecond: true });
  try {
    assert.equal(h.nanosecond, true);
    const got = readAll(h);
    assert.deepEqual(got.map((p) => [p.sec, p.frac]), want.map((p) => [p.sec, p.frac]));
    assert.ok(got.some((p) => p.frac >= 1000000), "fractions are in nanoseconds");
  } finally {
    h.close();
  }

  const dir = Deno.makeTempDirSync({ prefix: "cc-pcap-" });
  try {
    const file = `${dir}/nano.pcap`;
    const fracs = writePcap(file, [pattern(80, 1), pattern(90, 2)], { nano: true });
    const nano = PcapHandle.openOffline(file, { nanosecond: true });
    const micro = PcapHandle.openOffline(file);
    try {
      for (const frac of fracs) {
        assert.equal(nano.next(), 1);
        assert.equal(nano.tsFrac, frac);
        assert.equal(micro.next(), 1);
        assert.equal(micro.tsFrac, Math.floor(frac / 1000));
      }
    } finally {
      nano.close();
      micro.close();
    }
    const tcpdumpNano = await oracle(file, true);
    assert.deepEqual(tcpdumpNano.map((p) => p.frac), fracs);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("offline: a file libpcap refuses gives libpcap's text prefixed with the path", () => {
  const license = `${CORPUS}/LICENSE`;
  assert.throws(
    () => PcapHandle.openOffline(license),
    (err: Error) => err.message === `${license}: unknown file format`,
  );
  assert.throws(
    () => PcapHandle.openOffline("/nonexistent/x.pcap"),
    /^Error: \/nonexistent\/x\.pcap: .*No such file or directory/,
  );
  const dir = Deno.makeTempDirSync({ prefix: "cc-pcap-" });
  try {
    Deno.writeFileSync(`${dir}/short.pcap`, new Uint8Array([0xd4, 0xc3, 0xb2, 0xa1, 2, 0]));
    assert.throws(
      () => PcapHandle.openOffline(`${dir}/short.pcap`),
      new RegExp(`^Error: ${dir}/short\\.pcap: truncated dump file`),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("setFilter: a bad expression shows libpcap's text, a good one filters like tcpdump", async () => {
  const path = `${CORPUS}/pim-packet-assortment.pcap`;
  const h = PcapHandle.openOffline(path);
  try {
    assert.throws(
      () => h.setFilter("tcp portt 80"),
      (err: Error) => /^Bad BPF filter "tcp portt 80": .*syntax error/.test(err.message),
    );
    h.setFilter("ip proto 103");
    const got = readAll(h).length;
    const want = (await run("tcpdump", ["-r", path, "-tt", "-nn", "ip proto 103"]))
      .split("\n").filter((l) => /^\d+\.\d{6} /.test(l)).length;
    assert.ok(want > 0);
    assert.equal(got, want);
  } finally {
    h.close();
  }
});

Deno.test("closed handle: next() reports an error instead of touching freed memory", () => {
  const h = PcapHandle.openOffline(`${CORPUS}/ptp_ethernet.pcap`);
  assert.equal(h.next(), 1);
  h.close();
  h.close();
  assert.equal(h.next(), -1);
  assert.match(h.lastError(), /is closed$/);
  assert.throws(() => h.linkType(), /^Error: Capture handle on .* is closed$/);
});

Deno.test("findAllDevs lists lo with its address; defaultInterface and libpcapVersion", () => {
  const devs = findAllDevs();
  const lo = devs.find((d) => d.name === "lo");
  assert.ok(lo !== undefined, `lo missing from ${devs.map((d) => d.name).join(", ")}`);
  assert.equal(lo.loopback, true);
  assert.equal(lo.up, true);
  assert.ok(lo.addresses.includes("127.0.0.1"), lo.addresses.join(","));
  const def = defaultInterface();
  assert.notEqual(def, "any");
  assert.ok(devs.some((d) => d.name === def));
  assert.match(libpcapVersion(), /^libpcap version \d+\.\d+/);
});

Deno.test("loadLibpcap: a missing library is one line with the install command", async () => {
  assert.equal(loadLibpcap(), loadLibpcap());
  const code = `import { loadLibpcap } from "${new URL("../ffi/libpcap.ts", import.meta.url)}";
    try { loadLibpcap(); } catch (e) { console.log((e as Error).message); }`;
  for (const env of [{ CUTCAP_LIBPCAP: "/nonexistent/libpcap.so" }]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", code],
      env,
      stdout: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert.equal(text.split("\n").length, 1, text);
    assert.match(text, /^Cannot load libpcap from \/nonexistent\/libpcap\.so: /);
    assert.match(text, /apt-get install -y libpcap0\.8/);
  }
});

Deno.test("breakLoop makes the next read return -2, also through the handle's address", () => {
  const h = PcapHandle.openOffline(`${CORPUS}/ptp_ethernet.pcap`);
  try {
    assert.equal(h.next(), 1);
    h.breakLoop();
    assert.equal(h.next(), -2);
    assert.equal(h.next(), 1); // libpcap clears the flag once reported
    PcapHandle.breakLoopAt(h.address());
    assert.equal(h.next(), -2);
  } finally {
    h.close();
  }
});
