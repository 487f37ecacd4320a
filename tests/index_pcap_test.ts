import assert from "node:assert/strict";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { KEY_WORDS } from "../src/packet/packet_info.ts";
import { parseQuery } from "../src/query/parse.ts";
import { selectPackets } from "../src/query/select.ts";
import { decompressBlockRange } from "../src/pcap/mod.ts";
import {
  canonicalizeKey,
  type FileIndex,
  findBlock,
  indexPcapFile,
  readFileIndex,
} from "../src/index/mod.ts";
import { CORPUS_DIR } from "./support/corpus.ts";
import { prng } from "./support/prng.ts";
import * as craft from "./support/pcap_craft.ts";

const CORPUS = CORPUS_DIR.slice(0, -1);

// ---- independent pcap helpers (deliberately not the scanner under test) ----

interface Rec {
  sec: number;
  usec: number;
  len: number;
  data: Uint8Array;
}

function pcapFormat(data: Uint8Array): { le: boolean; nano: boolean } {
  const m = new DataView(data.buffer, data.byteOffset).getUint32(0, true);
  return { le: m === 0xa1b2c3d4 || m === 0xa1b23c4d, nano: m === 0xa1b23c4d || m === 0x4d3cb2a1 };
}

/** The record at byte `o` of a plain pcap, with the time normalized to µs (as libpcap reads it). */
function recAt(data: Uint8Array, o: number): Rec {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const { le, nano } = pcapFormat(data);
  const cap = dv.getUint32(o + 8, le);
  const frac = dv.getUint32(o + 4, le);
  return {
    sec: dv.getUint32(o, le),
    usec: nano ? Math.floor(frac / 1000) : frac,
    len: dv.getUint32(o + 12, le),
    data: data.subarray(o + 16, o + 16 + cap),
  };
}

/** Offsets of all complete records of a plain pcap. */
function recordOffsets(data: Uint8Array): number[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const { le } = pcapFormat(data);
  const out: number[] = [];
  for (let o = 24; o + 16 <= data.length;) {
    const cap = dv.getUint32(o + 8, le);
    if (o + 16 + cap > data.length) break;
    out.push(o);
    o += 16 + cap;
  }
  return out;
}

/** tcpdump's -w output is in host order and µs; libpcap may cut caplen to the file's snaplen. */
function sameRecord(theirs: Rec, ours: Rec): boolean {
  if (theirs.sec !== ours.sec || theirs.usec !== ours.usec || theirs.len !== ours.len) return false;
  if (theirs.data.length > ours.data.length) return false;
  for (let i = 0; i < theirs.data.length; i++) if (theirs.data[i] !== ours.data[i]) return false;
  return true;
}

function tcpdump(args: string[]): { out: Uint8Array; err: string } {
  const r = new Deno.Command("tcpdump", { args, stdout: "piped", stderr: "piped" }).outputSync();
  return { out: r.stdout, err: new TextDecoder().decode(r.stderr) };
}

function ipText(k: Uint32Array, at: number, v6: boolean): string {
  if (!v6) return [k[at] >>> 24, (k[at] >>> 16) & 255, (k[at] >>> 8) & 255, k[at] & 255].join(".");
  const parts: string[] = [];
  for (let i = 0; i < 4; i++) {
    parts.push((k[at + i] >>> 16).toString(16), (k[at + i] & 0xffff).toString(16));
  }
  return parts.join(":");
}

/**
 * The BPF filter selecting exactly one TCP/UDP flow of the index (both directions), or null when the
 * flow is not one BPF can express (non-IP, other protocols, VLAN-tagged, port-less fragments).
 */
function flowFilter(idx: FileIndex, f: number): string | null {
  const k = idx.keys.subarray(f * KEY_WORDS, f * KEY_WORDS + KEY_WORDS);
  const kind = k[9] >>> 28;
  const proto = (k[9] >>> 16) & 255;
  if ((kind !== 4 && kind !== 6) || (proto !== 6 && proto !== 17) || (k[9] & 0xfff) !== 0) {
    return null;
  }
  const pa = k[8] >>> 16;
  const pb = k[8] & 0xffff;
  if (pa === 0 && pb === 0) return null;
  const a = ipText(k, 0, kind === 6);
  const b = ipText(k, 4, kind === 6);
  return `${proto === 6 ? "tcp" : "udp"} and (` +
    `(src host ${a} and dst host ${b} and src port ${pa} and dst port ${pb}) or ` +
    `(src host ${b} and dst host ${a} and src port ${pb} and dst port ${pa}))`;
}

/**
 * True when BPF's plain `tcp`/`udp`/`port` primitives cannot see this Ethernet frame's transport
 * header: MPLS-encapsulated IP, or IPv6 with extension headers (BPF does not walk the chain).
 */
function bpfBlind(frame: Uint8Array): boolean {
  const type = (frame[12] << 8) | frame[13];
  if (type === 0x8847 || type === 0x8848) return true;
  return type === 0x86dd && frame[20] !== 6 && frame[20] !== 17;
}

/** Compares, flow by flow, the packets at the index's offsets with what tcpdump's filter selects. */
function checkAgainstTcpdump(
  pcapPath: string,
  data: Uint8Array,
  idx: FileIndex,
): { checked: number; blind: number; mismatches: string[] } {
  let checked = 0;
  let blind = 0;
  const mismatches: string[] = [];
  for (let f = 0; f < idx.header.flowCount; f++) {
    const filter = flowFilter(idx, f);
    if (filter === null) continue;
    const ours: Rec[] = [];
    for (let i = idx.pktStart[f]; i < idx.pktStart[f] + idx.pktCount[f]; i++) {
      ours.push(recAt(data, idx.offsets[i]));
    }
    const out = tcpdump(["-r", pcapPath, "-w", "-", filter]).out;
    const theirs = out.length >= 24 ? recordOffsets(out).map((o) => recAt(out, o)) : [];
    checked++;
    if (theirs.length === ours.length && theirs.every((t, i) => sameRecord(t, ours[i]))) continue;
    if (idx.header.linkType === 1 && ours.every((r) => bpfBlind(r.data))) {
      blind++;
      continue;
    }
    mismatches.push(`${pcapPath}: ${filter}: tcpdump ${theirs.length}, index ${ours.length}`);
  }
  return { checked, blind, mismatches };
}

Deno.test("indexPcapFile on the tcpdump corpus: all packets, every flow equals tcpdump's filter", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idx-" });
  try {
    let files = 0;
    let checked = 0;
    let blind = 0;
    const mismatches: string[] = [];
    for (const e of [...Deno.readDirSync(CORPUS)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const path = `${CORPUS}/${e.name}`;
      if (e.name.endsWith(".pcapng")) {
        assert.throws(
          () => indexPcapFile(path, { indexPath: `${dir}/x.idx` }),
          /found pcapng \(not queryable in place; re-cut it with: cutcap capture --read .* --out DIR\)/,
        );
        continue;
      }
      if (!e.name.endsWith(".pcap")) continue;
      files++;
      const idxPath = `${dir}/${e.name}.idx`;
      const sum = indexPcapFile(path, { indexPath: idxPath, iface: "corpus", worker: 0 });
      const idx = readFileIndex(idxPath);
      const data = Deno.readFileSync(path);
      // Every complete record is indexed exactly once, under some flow.
      const all = recordOffsets(data);
      assert.deepEqual(Array.from(idx.offsets).sort((a, b) => a - b), all, e.name);
      assert.equal(sum.packets, all.length);
      assert.equal(idx.header.pcapSize, data.length);
      assert.equal(idx.header.iface, "corpus");
      const count = tcpdump(["-r", path, "--count"]).out;
      const m = /(\d+) packets?/.exec(new TextDecoder().decode(count));
      if (m !== null && sum.stopReason === "") assert.equal(Number(m[1]), all.length, e.name);
      const r = checkAgainstTcpdump(path, data, idx);
      checked += r.checked;
      blind += r.blind;
      mismatches.push(...r.mismatches);
    }
    console.log(
      `corpus: ${files} pcap files, ${checked} TCP/UDP flows compared with tcpdump, ` +
        `${blind} only in MPLS/IPv6-extension packets that BPF cannot filter`,
    );
    assert.deepEqual(mismatches, []);
    assert.ok(files > 300 && checked > 200);
    assert.ok(blind <= 5, `${blind} BPF-blind flows`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

// ---- synthetic traffic, rewritten by tcpdump ----

/** An Ethernet frame carrying IPv4 or IPv6 and TCP or UDP with `payload` zero bytes. */
function frame(
  v6: boolean,
  tcp: boolean,
  src: number,
  dst: number,
  sport: number,
  dport: number,
  payload: number,
): Uint8Array {
  const l4 = tcp ? 20 : 8;
  const l3 = v6 ? 40 : 20;
  const f = new Uint8Array(14 + l3 + l4 + payload);
  const dv = new DataView(f.buffer);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  dv.setUint16(12, v6 ? 0x86dd : 0x0800);
  const proto = tcp ? 6 : 17;
  if (v6) {
    f[14] = 0x60;
    dv.setUint16(18, l4 + payload);
    f[20] = proto;
    f[21] = 64;
    dv.setUint32(22, 0x20010db8); // 2001:db8::/32
    dv.setUint32(34, src);
    dv.setUint32(38, 0x20010db8);
    dv.setUint32(50, dst);
  } else {
    f[14] = 0x45;
    dv.setUint16(16, 20 + l4 + payload);
    f[22] = 64;
    f[23] = proto;
    dv.setUint32(26, 0xc6120000 | (src & 0xffff)); // 198.18.0.0/15
    dv.setUint32(30, 0xc6120000 | (dst & 0xffff));
  }
  const t = 14 + l3;
  dv.setUint16(t, sport);
  dv.setUint16(t + 2, dport);
  if (tcp) f[t + 12] = 0x50;
  else dv.setUint16(t + 4, 8 + payload);
  return f;
}

/** A plain µs pcap of `n` packets over `flows` bidirectional flows; caplen cut at 256 bytes. */
function synthPcap(n: number, flows: number, seed: number): Uint8Array {
  const rand = prng(seed);
  const parts: Uint8Array[] = [];
  const gh = new Uint8Array(24);
  const g = new DataView(gh.buffer);
  g.setUint32(0, 0xa1b2c3d4, true);
  g.setUint16(4, 2, true);
  g.setUint16(6, 4, true);
  g.setUint32(16, 256, true);
  g.setUint32(20, 1, true);
  parts.push(gh);
  let sec = 1700000000;
  let usec = 0;
  for (let i = 0; i < n; i++) {
    const fl = Math.floor(rand() * flows);
    const fwd = rand() < 0.5;
    const v6 = fl % 3 === 0;
    const tcp = fl % 4 !== 1;
    const a = 1 + fl * 2;
    const b = 2 + fl * 2;
    const pa = 1024 + fl;
    const pb = fl % 2 === 0 ? 443 : 53;
    const fr = fwd
      ? frame(v6, tcp, a, b, pa, pb, Math.floor(rand() * 1400))
      : frame(v6, tcp, b, a, pb, pa, Math.floor(rand() * 1400));
    usec += 1 + Math.floor(rand() * 3000);
    if (usec >= 1e6) {
      sec++;
      usec -= 1e6;
    }
    const cap = Math.min(fr.length, 256);
    const rh = new Uint8Array(16);
    const r = new DataView(rh.buffer);
    r.setUint32(0, sec, true);
    r.setUint32(4, usec, true);
    r.setUint32(8, cap, true);
    r.setUint32(12, fr.length, true);
    parts.push(rh, fr.subarray(0, cap));
  }
  const total = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Cuts `data` at the given uncompressed positions and compresses each piece as its own unit. */
function blockCompress(data: Uint8Array, cuts: number[], zstd: boolean): Uint8Array {
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const c of [...cuts, data.length]) {
    const piece = data.subarray(from, c);
    pieces.push(zstd ? zstdCompressSync(piece) : gzipSync(piece));
    from = c;
  }
  const out = new Uint8Array(pieces.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Decompresses with the gzip or zstd command-line tool. */
function unpack(comp: Uint8Array, zstd: boolean): Uint8Array {
  const tmp = Deno.makeTempFileSync({ prefix: "cc-idx-block-" });
  try {
    Deno.writeFileSync(tmp, comp);
    const r = new Deno.Command(zstd ? "zstd" : "gzip", { args: ["-dc", tmp], stdout: "piped" })
      .outputSync();
    assert.equal(r.code, 0);
    return r.stdout;
  } finally {
    Deno.removeSync(tmp);
  }
}

/** Every indexed packet, read through the block table, equals the plain file's record. */
function checkBlocks(idx: FileIndex, file: Uint8Array, plain: Uint8Array, zstd: boolean): void {
  const dv = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const cache = new Map<number, Uint8Array>();
  for (let i = 0; i < idx.offsets.length; i++) {
    const off = idx.offsets[i];
    const b = findBlock(idx.blocks, off);
    assert.ok(b >= 0, `offset ${off} is in a block`);
    let block = cache.get(b);
    if (block === undefined) {
      const comp = file.subarray(idx.blocks[b * 4], idx.blocks[b * 4] + idx.blocks[b * 4 + 1]);
      // The zstd/gzip tools, which read every frame/member of a block, are the oracle here.
      block = unpack(comp, zstd);
      const mine = decompressBlockRange(comp, zstd ? "zstd" : "gzip");
      assert.deepEqual(new Uint8Array(mine.buffer, mine.byteOffset, mine.length), block);
      assert.equal(block.length, idx.blocks[b * 4 + 3]);
      cache.set(b, block);
    }
    const len = 16 + dv.getUint32(off + 8, true);
    const rel = off - idx.blocks[b * 4 + 2];
    assert.ok(rel + len <= block.length, `record at ${off} lies inside block ${b}`);
    assert.deepEqual(block.subarray(rel, rel + len), plain.subarray(off, off + len));
  }
}

Deno.test("indexPcapFile on a tcpdump-written file, plain and compressed in every layout", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idx-" });
  try {
    Deno.writeFileSync(`${dir}/synth.pcap`, synthPcap(6000, 60, 5));
    // tcpdump writes the file we index; the synthetic one is only its input.
    const w = tcpdump(["-r", `${dir}/synth.pcap`, "-w", `${dir}/td.pcap`]);
    assert.ok(Deno.statSync(`${dir}/td.pcap`).size > 24, w.err);
    const plain = Deno.readFileSync(`${dir}/td.pcap`);
    const offsets = recordOffsets(plain);
    assert.equal(offsets.length, 6000);

    const sum = indexPcapFile(`${dir}/td.pcap`, { iface: "veth0", worker: 2 });
    assert.equal(sum.indexPath, `${dir}/td.pcap.idx`);
    assert.equal(sum.packets, 6000);
    assert.equal(sum.flows, 60);
    assert.equal(sum.compress, "none");
    assert.equal(sum.stopReason, "");
    const idx = readFileIndex(sum.indexPath);
    assert.equal(idx.header.worker, 2);
    assert.equal(idx.header.blockCount, 0);
    assert.deepEqual(Array.from(idx.offsets).sort((a, b) => a - b), offsets);
    const r = checkAgainstTcpdump(`${dir}/td.pcap`, plain, idx);
    assert.equal(r.checked, 60);
    assert.deepEqual(r.mismatches, []);
    // Flow times and counts agree with the records.
    for (let f = 0; f < 60; f++) {
      const s = idx.pktStart[f];
      const first = recAt(plain, idx.offsets[s]);
      assert.equal(idx.firstTs[f], first.sec + first.usec * 1e-6);
      let bytes = 0;
      for (let i = s; i < s + idx.pktCount[f]; i++) bytes += recAt(plain, idx.offsets[i]).len;
      assert.equal(idx.bytes[f], bytes);
    }

    const layouts: { name: string; data: Uint8Array; zstd: boolean; blocks: number }[] = [];
    // One stream, as `gzip F` / `zstd F` make it.
    layouts.push({ name: "one.pcap.gz", data: gzipSync(plain), zstd: false, blocks: 1 });
    layouts.push({ name: "one.pcap.zst", data: zstdCompressSync(plain), zstd: true, blocks: 1 });
    // cutcap-style: units cut at record boundaries (every 500th record; the first holds the header).
    const atRecords = offsets.filter((_, i) => i > 0 && i % 500 === 0);
    for (const zstd of [false, true]) {
      layouts.push({
        name: `blocks.pcap.${zstd ? "zst" : "gz"}`,
        data: blockCompress(plain, atRecords, zstd),
        zstd,
        blocks: atRecords.length + 1,
      });
    }
    // Foreign multi-unit files cut mid-record (and mid global header): units merge into blocks.
    // Units: [0,10) [10,70000) [70000,70001) [70001,o1000) | [o1000,o2000+5) [o2000+5,o4000) |
    // [o4000,end-5) [end-5,end): three blocks, split where a unit boundary is a record boundary.
    const o = offsets;
    const midRecord = [10, 70000, 70001, o[1000], o[2000] + 5, o[4000], plain.length - 5];
    for (const zstd of [false, true]) {
      layouts.push({
        name: `cut.pcap.${zstd ? "zst" : "gz"}`,
        data: blockCompress(plain, midRecord, zstd),
        zstd,
        blocks: 3,
      });
    }
    for (const l of layouts) {
      const path = `${dir}/${l.name}`;
      Deno.writeFileSync(path, l.data);
      const s = indexPcapFile(path);
      assert.equal(s.packets, 6000, l.name);
      assert.equal(s.compress, l.zstd ? "zstd" : "gzip");
      assert.equal(s.stopReason, "", l.name);
      const zi = readFileIndex(s.indexPath);
      assert.equal(zi.header.blockCount, l.blocks, l.name);
      assert.equal(zi.header.wholeStream, zi.header.blockCount === 1);
      assert.equal(zi.header.dataSize, plain.length);
      assert.equal(zi.header.pcapSize, l.data.length);
      // Same flows and offsets as the plain file's index.
      assert.deepEqual(zi.keys, idx.keys);
      assert.deepEqual(zi.offsets, idx.offsets);
      assert.deepEqual(zi.pktCount, idx.pktCount);
      checkBlocks(zi, l.data, plain, l.zstd);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("indexPcapFile: truncated tails, byte order, nanoseconds, refusals", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idx-" });
  try {
    const plain = synthPcap(300, 10, 9);
    const offsets = recordOffsets(plain);
    // Cut inside the last record: it is dropped and the reason says so.
    Deno.writeFileSync(`${dir}/cut.pcap`, plain.subarray(0, plain.length - 3));
    const s = indexPcapFile(`${dir}/cut.pcap`);
    assert.equal(s.packets, 299);
    assert.match(s.stopReason, /truncated dump file/);
    // A cut compressed unit is dropped whole (a query could not decompress it either).
    const half = offsets[150];
    for (const zstd of [false, true]) {
      const z = blockCompress(plain, [half], zstd);
      const name = `${dir}/cut.pcap.${zstd ? "zst" : "gz"}`;
      Deno.writeFileSync(name, z.subarray(0, z.length - 30));
      const c = indexPcapFile(name);
      assert.equal(c.packets, 150, name);
      assert.equal(c.blocks, 1);
      assert.match(
        c.stopReason,
        zstd ? /truncated zstd frame at byte \d+/ : /truncated gzip member/,
      );
      Deno.writeFileSync(name, z.subarray(0, 40));
      assert.throws(() => indexPcapFile(name), /Cannot index .*: truncated .* no complete block/);
    }

    // Big-endian nanosecond copy of the same packets: same flows and offsets.
    const be = plain.slice();
    const dv = new DataView(be.buffer);
    const src = new DataView(plain.buffer);
    dv.setUint32(0, 0xa1b23c4d, false);
    for (const at of [4, 6]) dv.setUint16(at, src.getUint16(at, true), false);
    for (const at of [8, 12, 16, 20]) dv.setUint32(at, src.getUint32(at, true), false);
    for (const o of offsets) {
      dv.setUint32(o, src.getUint32(o, true), false);
      dv.setUint32(o + 4, src.getUint32(o + 4, true) * 1000, false);
      dv.setUint32(o + 8, src.getUint32(o + 8, true), false);
      dv.setUint32(o + 12, src.getUint32(o + 12, true), false);
    }
    Deno.writeFileSync(`${dir}/be.pcap`, be);
    Deno.writeFileSync(`${dir}/le.pcap`, plain);
    const a = readFileIndex(indexPcapFile(`${dir}/le.pcap`).indexPath);
    const b = readFileIndex(indexPcapFile(`${dir}/be.pcap`).indexPath);
    assert.equal(b.header.nanosecond, true);
    assert.deepEqual(b.keys, a.keys);
    assert.deepEqual(b.offsets, a.offsets);
    assert.deepEqual(b.firstTs, a.firstTs);
    // tcpdump reads the big-endian file the same way.
    assert.equal(checkAgainstTcpdump(`${dir}/be.pcap`, be, b).mismatches.length, 0);

    Deno.writeFileSync(`${dir}/junk.pcap`, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
    assert.throws(
      () => indexPcapFile(`${dir}/junk.pcap`),
      /Cannot index .*junk.pcap: expected a pcap file \(magic a1b2c3d4 or a1b23c4d.*found magic 0x20544547/,
    );
    Deno.writeFileSync(`${dir}/empty.pcap`, new Uint8Array(0));
    assert.throws(() => indexPcapFile(`${dir}/empty.pcap`), /expected a pcap file, found 0 bytes/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("canonicalizeKey orders the ends like the FlowTable", () => {
  const k = new Uint32Array(KEY_WORDS);
  k[0] = 0xc6120002;
  k[4] = 0xc6120001;
  k[8] = (443 << 16) | 50000;
  k[9] = (4 << 28) | (6 << 16);
  assert.equal(canonicalizeKey(k), true);
  assert.equal(k[0], 0xc6120001);
  assert.equal(k[4], 0xc6120002);
  assert.equal(k[8], ((50000 << 16) | 443) >>> 0);
  assert.equal(canonicalizeKey(k), false);
  // Same address: the smaller port is A.
  const s = new Uint32Array(KEY_WORDS);
  s[0] = s[4] = 7;
  s[8] = (9000 << 16) | 80;
  assert.equal(canonicalizeKey(s), true);
  assert.equal(s[8], (80 << 16) | 9000);
  // Unsigned comparison: 0x80000000 > 0x7fffffff.
  const u = new Uint32Array(KEY_WORDS);
  u[0] = 0x80000000;
  u[4] = 0x7fffffff;
  assert.equal(canonicalizeKey(u), true);
  assert.equal(u[0], 0x7fffffff);
});

Deno.test("index: each flow's inner VLAN ids and MPLS labels, flows reordered by time", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-idx-tags-" });
  try {
    const t0 = 1_800_000_000_000_000;
    const frame = (src: string, tags: [number, number][], labels: number[]) => {
      const ip = craft.ipv4(src, "198.18.0.1", 17, craft.udp(1, 2));
      return labels.length > 0
        ? craft.ethernet(0x8847, craft.mpls(labels, ip), tags)
        : craft.ethernet(0x0800, ip, tags);
    };
    // Times go back, so flows are written in another order than they appeared.
    const records = [
      { us: t0 + 50, frame: frame("198.18.1.1", [[0x88a8, 10], [0x8100, 20]], []) },
      { us: t0 + 10, frame: frame("198.18.1.2", [], [16, 17]) },
      { us: t0 + 30, frame: frame("198.18.1.3", [], []) },
      { us: t0 + 20, frame: frame("198.18.1.1", [[0x88a8, 10], [0x8100, 21]], []) },
      { us: t0 + 40, frame: frame("198.18.1.4", [[0x8100, 5]], [99]) },
      { us: t0 + 60, frame: frame("198.18.1.6", [], [7]) },
      { us: t0 + 61, frame: frame("198.18.1.6", [], []) }, // popped: no label
      // More distinct labels than a flow keeps (32).
      ...Array.from({ length: 33 }, (_, i) => ({
        us: t0 + 70 + i,
        frame: frame("198.18.1.5", [], [100 + i]),
      })),
    ];
    const path = `${dir}/tags.pcap`;
    await Deno.writeFile(path, craft.pcapFile(1, 65535, records));
    indexPcapFile(path);
    const index = readFileIndex(`${path}.idx`);
    const got = new Map<string, number[]>();
    for (let f = 0; f < index.header.flowCount; f++) {
      const a = index.keys[f * 10 + 4] === 0xc6120001 ? index.keys[f * 10] : index.keys[f * 10 + 4];
      const tags = index.tags.subarray(index.tagStart[f], index.tagStart[f] + index.tagCount[f]);
      got.set(`198.18.1.${a & 255}`, [...tags]);
    }
    const vlan = (id: number) => (1 << 24) | id;
    const label = (n: number) => (2 << 24) | n;
    // Last entry: the marker (3 << 24 | bit 0 uniform, bit 1 incomplete).
    const uniform = (3 << 24) | 1, mixed = 3 << 24, incomplete = (3 << 24) | 2;
    assert.deepEqual(Object.fromEntries(got), {
      "198.18.1.1": [vlan(20), vlan(21), mixed], // both inner tags seen, in file order
      "198.18.1.2": [label(16), label(17), uniform],
      "198.18.1.3": [],
      "198.18.1.4": [label(99), uniform], // the outermost tag is in the key, not here
      "198.18.1.5": [...Array.from({ length: 32 }, (_, i) => label(100 + i)), incomplete],
      "198.18.1.6": [label(7), mixed],
    });
    // What a query leaves to the frames: packets of flows whose marker does not decide.
    const undecided = (q: string) => {
      const selection = selectPackets(index, parseQuery(q));
      const checked = selection.check?.flow.filter((f) => f >= 0).length ?? 0;
      return [selection.offsets.length, checked];
    };
    // 198.18.1.5's 33 packets are left to the frames for any label: its list is incomplete.
    assert.deepEqual(undecided("mpls 99"), [1 + 33, 33]); // 198.18.1.4 uniform: all of it, decided
    assert.deepEqual(undecided("mpls 7"), [2 + 33, 2 + 33]); // one of 198.18.1.6's two carries it
    assert.deepEqual(undecided("vlan 20"), [2 + 33, 2 + 33]); // 198.18.1.1: one of two
    assert.deepEqual(undecided("vlan 5"), [1 + 33, 33]); // the outermost tag: the key decides
    assert.deepEqual(undecided("vlan 6"), [33, 33]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
