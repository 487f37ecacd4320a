/**
 * Seeded synthetic traffic: realistic Ethernet frames written straight into pcap bytes, plus the
 * ground truth (which flow every packet belongs to, and per flow its key and totals).
 *
 * This module is an independent oracle for the capture pipeline: it shares no code with
 * src/packet, src/flow or src/store. Its flow key layout is a copy of the one documented in
 * src/packet/packet_info.ts (10 u32 words), written with A = the flow's initiator.
 *
 * Model: flows arrive as a Poisson process and run concurrently; a binary heap keyed by each flow's
 * next packet time interleaves them, so timestamps are non-decreasing. Flow sizes are heavy-tailed
 * (Pareto), so a few elephants carry most bytes. Every flow key is unique by construction
 * (each TCP/UDP flow has its own client address+port, each ICMP flow its own client address, each
 * ARP flow its own MAC), so truth flows are exactly the bidirectional 5-tuple+VLAN conversations.
 */

import { Prng } from "./prng.ts";

/** Words per flow key; the layout copies src/packet/packet_info.ts. */
export const TRUTH_KEY_WORDS = 10;

/** What kind of conversation a truth flow is. */
export const FlowApp = {
  /** TCP, the server sends most bytes (web download). */
  TcpWeb: 0,
  /** TCP, the client sends most bytes. */
  TcpUpload: 1,
  /** TCP, small segments both ways (ssh-like). */
  TcpInteractive: 2,
  /** UDP query/response pairs to port 53 with valid DNS messages. */
  UdpDns: 3,
  /** UDP bulk stream, mostly client to server. */
  UdpBulk: 4,
  /** ICMP or ICMPv6 echo request/reply. */
  IcmpEcho: 5,
  /** ARP requests from one host to the broadcast address. */
  ArpBroadcast: 6,
  /** Unicast ARP request and reply between two hosts. */
  ArpUnicast: 7,
} as const;

/** Flow kinds, equal to FlowKind in src/packet/packet_info.ts. */
export const TruthKind = { L2: 1, Ipv4: 4, Ipv6: 6 } as const;

/** Options of generateTraffic; only seed and packets are required. */
export interface TrafficOptions {
  /** PRNG seed: the same options always give the same bytes. */
  seed: number;
  /** Exact number of frames to generate. */
  packets: number;
  /** Approximate total number of flows (scales the flow-size distribution); default about packets/20. */
  flows?: number;
  /** Fraction of IP flows that are IPv6, default 0.25. */
  ipv6Share?: number;
  /** Fraction of flows that carry an 802.1Q tag, default 0.2. */
  vlanShare?: number;
  /** Fraction of tagged flows that are QinQ (802.1ad outer + 802.1Q inner), default 0.1. */
  qinqShare?: number;
  /** Fraction of flows that are ARP (non-IP), default 0.03. */
  nonIpShare?: number;
  /** First packet time in seconds since the epoch (rounded to microseconds), default 1700000000. */
  startTs?: number;
  /** Mean aggregate packet rate in packets per second, default 100000. */
  rate?: number;
  /** No flow is silent longer than this many seconds (except the idleGapEvery flows), default 10. */
  maxIdle?: number;
  /** Every Nth flow with at least 4 packets pauses once, mid-flow, for idleGap seconds; 0 = never. */
  idleGapEvery?: number;
  /** Length in seconds of the idleGapEvery pause, default 1.5 * maxIdle. */
  idleGap?: number;
  /** Capture length limit: frames longer than this are truncated (caplen < len); 0 = none. */
  snaplen?: number;
  /** Write a nanosecond-resolution pcap (magic 0xa1b23c4d); timestamps stay whole microseconds. */
  nanosecond?: boolean;
  /** End FIN-closed TCP connections with the final client ACK after FIN, FIN-ACK; default false. */
  finalAck?: boolean;
  /** Size of the output chunks handed to the sink, default 4 MiB. */
  chunkBytes?: number;
}

/** Per-flow ground truth; every array has `count` entries (key has count * TRUTH_KEY_WORDS). */
export interface TrafficFlows {
  count: number;
  /** Packets of the flow, both directions. */
  packets: Float64Array;
  /** Sum of the wire lengths (pcap `len`) of the flow's packets. */
  bytes: Float64Array;
  /** Index of the flow's first packet; increasing with the flow number. */
  firstPacket: Int32Array;
  lastPacket: Int32Array;
  /** TruthKind: 4 IPv4, 6 IPv6, 1 non-IP. */
  kind: Uint8Array;
  /** IP protocol number (6, 17, 1, 58), 0 for non-IP. */
  proto: Uint8Array;
  /** Outermost VLAN id, 0 when untagged. */
  vlan: Uint16Array;
  /** Inner VLAN id of QinQ flows, 0 otherwise. */
  innerVlan: Uint16Array;
  /** FlowApp of the flow. */
  app: Uint8Array;
  /** Index within the flow of the packet followed by the long idleGap pause, -1 when none. */
  idleGapAfter: Int32Array;
  /** Flow keys in the src/packet/packet_info.ts layout, A = initiator, not canonically ordered. */
  key: Uint32Array;
}

/** Everything the generator knows about the frames it wrote. */
export interface TrafficTruth {
  packets: number;
  /** Flow number of every packet. */
  flowOfPacket: Int32Array;
  /** Wire length (pcap `len`) of every packet. */
  wireLen: Uint16Array;
  /** Timestamp of every packet in microseconds since the epoch. */
  tsUs: Float64Array;
  flows: TrafficFlows;
  /** Sum of all wire lengths. */
  totalBytes: number;
  /** Bytes of the pcap output, headers included. */
  fileBytes: number;
  linkType: 1;
  snaplen: number;
  nanosecond: boolean;
}

/** Receives pcap bytes in order; the view is only valid during the call. */
export type ChunkSink = (chunk: Uint8Array) => void;

const App = FlowApp;

const POOL_RANDOM = 1 << 18;
const POOL_BYTES = 1 << 19;
const MAX_RECORD = 16 + 1600;
const MIN_FRAME = 60;
const MAX_FLOW_US = 30e6;
const DEFAULT_SNAPLEN = 262144;
const HOSTS_V4 = 4096;
const HOSTS_V6 = 2048;
const SERVERS = 5000;
const PORTS_PER_HOST = 64512;
const ICMP_V4_CLIENTS = 128 * 254;
const ARP_HOSTS = 128 * 254;
const HTTP_REQUESTS = 16;
const WG_HEADER = 16;
const MAC_CLIENT = 0x00;
// Not 0x01-0x20: Wireshark names 02:01..02:20 as Microsoft NLB addresses.
const MAC_ICMP_CLIENT = 0x40;
const MAC_SERVER = 0x50;
const MAC_ARP_A = 0x60;
const MAC_ARP_B = 0x61;
const DNS_NAMES = [
  "www.example.com",
  "api.example.net",
  "cdn.example.org",
  "mail.example.com",
  "static.example.net",
  "img1.example.org",
  "login.example.com",
  "video.example.net",
  "news.example.org",
  "updates.example.com",
  "time.example.net",
  "repo.example.org",
];

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;

const CLOSE_FIN = 0;
const CLOSE_RST_CLIENT = 1;
const CLOSE_RST_SERVER = 2;
const CLOSE_NONE = 3;

const L4_TCP = 0;
const L4_UDP = 1;
const L4_ICMP = 2;
const L4_ARP = 3;

function opt(value: number | undefined, fallback: number, name: string, lo: number, hi: number) {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v < lo || v > hi) {
    throw new Error(`Invalid ${name} ${v}: expected a number in ${lo}..${hi}`);
  }
  return v;
}

/**
 * Generates `opts.packets` frames as one pcap stream (global header first) handed to `sink` in
 * chunks, and returns the ground truth. Memory: ~14 bytes per packet of truth plus one chunk.
 */
export function generateTraffic(opts: TrafficOptions, sink: ChunkSink): TrafficTruth {
  return new Generator(opts, sink).run();
}

/** Estimates the mean flow size (packets) for a size scale, with a fixed private stream. */
function meanFlowSize(gen: Generator, scale: number): number {
  const rng = new Prng(0x5eed);
  let sum = 0;
  const draws = 40000;
  for (let k = 0; k < draws; k++) sum += gen.drawSize(rng, gen.drawApp(rng), scale);
  return sum / draws;
}

class Generator {
  readonly rng: Prng;
  readonly sink: ChunkSink;
  readonly n: number;
  readonly ipv6Share: number;
  readonly vlanShare: number;
  readonly qinqShare: number;
  readonly nonIpShare: number;
  readonly maxIdleUs: number;
  readonly gapCapUs: number;
  readonly idleGapEvery: number;
  readonly idleGapUs: number;
  readonly snaplen: number;
  readonly nanosecond: boolean;
  readonly finalAck: boolean;
  readonly elephantCap: number;
  scale = 1;
  meanArrivalUs = 0;

  // One buffer holds the payload pool and the output chunk, so payloads are copied with
  // copyWithin and nothing is allocated per packet.
  readonly mem: Uint8Array;
  readonly dv: DataView;
  readonly prefix: Float64Array;
  readonly outStart = POOL_BYTES;
  readonly outEnd: number;
  pos = POOL_BYTES;
  fileBytes = 0;
  poolUsed = POOL_RANDOM;
  dnsQueryOff: Int32Array = new Int32Array(0);
  dnsQueryLen: Int32Array = new Int32Array(0);
  dnsRespOff: Int32Array = new Int32Array(0);
  dnsRespLen: Int32Array = new Int32Array(0);
  httpReqOff: Int32Array = new Int32Array(0);
  httpReqLen: Int32Array = new Int32Array(0);
  httpRespOff = 0;
  httpRespLen = 0;

  // Per-packet truth.
  readonly flowOfPacket: Int32Array;
  readonly wireLen: Uint16Array;
  readonly tsUs: Float64Array;
  emitted = 0;

  // Per-flow truth, grown by doubling.
  flowCap = 0;
  flowCount = 0;
  fPackets = new Float64Array(0);
  fBytes = new Float64Array(0);
  fFirst = new Int32Array(0);
  fLast = new Int32Array(0);
  fKind = new Uint8Array(0);
  fProto = new Uint8Array(0);
  fVlan = new Uint16Array(0);
  fInner = new Uint16Array(0);
  fApp = new Uint8Array(0);
  fIdle = new Int32Array(0);
  fKey = new Uint32Array(0);

  // Active flow slots, grown by doubling; free slots are recycled.
  slotCap = 0;
  freeTop = 0;
  free = new Int32Array(0);
  heap = new Int32Array(0);
  heapSize = 0;
  sTime = new Float64Array(0);
  sApp = new Uint8Array(0);
  sV6 = new Uint8Array(0);
  sQinq = new Uint8Array(0);
  sVlan = new Uint16Array(0);
  sInner = new Uint16Array(0);
  sClient = new Int32Array(0);
  sServer = new Int32Array(0);
  sClientKind = new Uint8Array(0);
  sCPort = new Uint16Array(0);
  sSPort = new Uint16Array(0);
  sN = new Int32Array(0);
  sI = new Int32Array(0);
  sFlow = new Int32Array(0);
  sSeqC = new Uint32Array(0);
  sSeqS = new Uint32Array(0);
  sIsnC = new Uint32Array(0);
  sIpIdC = new Uint16Array(0);
  sIpIdS = new Uint16Array(0);
  sTtlS = new Uint8Array(0);
  sLabel = new Uint32Array(0);
  sGap = new Float64Array(0);
  sRtt = new Float64Array(0);
  sClose = new Uint8Array(0);
  sCloseLen = new Uint8Array(0);
  sIdleAt = new Int32Array(0);
  sMss = new Uint16Array(0);
  sTmpl = new Uint16Array(0);
  sAux = new Uint16Array(0);
  sWin = new Uint16Array(0);

  // Address bookkeeping that keeps every flow key unique.
  readonly portStartV4 = new Int32Array(HOSTS_V4);
  readonly portUsedV4 = new Int32Array(HOSTS_V4);
  readonly portStartV6 = new Int32Array(HOSTS_V6);
  readonly portUsedV6 = new Int32Array(HOSTS_V6);
  icmpV4 = 0;
  icmpV6 = 0;
  arpCount = 0;
  arrivals = 0;
  budget: number;

  // Scratch for the packet being written (fields, so the hot path creates nothing).
  fromServer = false;
  l4 = 0;
  tcpFlags = 0;
  tcpSeq = 0;
  tcpAck = 0;
  tcpSynOpts = false;
  payLen = 0;
  paySrc = 0;
  payPatch = 0;
  patchOn = false;
  icmpType = 0;
  icmpSeq = 0;
  arpOp = 0;

  constructor(opts: TrafficOptions, sink: ChunkSink) {
    this.sink = sink;
    this.n = opt(opts.packets, 0, "packets", 1, 2 ** 31 - 1);
    if (!Number.isInteger(this.n)) {
      throw new Error(`Invalid packets ${this.n}: expected an integer`);
    }
    this.rng = new Prng(opt(opts.seed, 0, "seed", -(2 ** 53), 2 ** 53));
    this.ipv6Share = opt(opts.ipv6Share, 0.25, "ipv6Share", 0, 1);
    this.vlanShare = opt(opts.vlanShare, 0.2, "vlanShare", 0, 1);
    this.qinqShare = opt(opts.qinqShare, 0.1, "qinqShare", 0, 1);
    this.nonIpShare = opt(opts.nonIpShare, 0.03, "nonIpShare", 0, 1);
    const maxIdle = opt(opts.maxIdle, 10, "maxIdle", 0.001, 1e6);
    this.maxIdleUs = Math.floor(maxIdle * 1e6);
    this.gapCapUs = Math.floor(this.maxIdleUs * 0.9);
    this.idleGapEvery = opt(opts.idleGapEvery, 0, "idleGapEvery", 0, 2 ** 31);
    this.idleGapUs = Math.round(opt(opts.idleGap, maxIdle * 1.5, "idleGap", 0, 1e7) * 1e6);
    this.snaplen = opt(opts.snaplen, 0, "snaplen", 0, DEFAULT_SNAPLEN);
    if (this.snaplen !== 0 && this.snaplen < 14) {
      throw new Error(`Invalid snaplen ${this.snaplen}: expected 0 or at least 14`);
    }
    this.nanosecond = opts.nanosecond ?? false;
    this.finalAck = opts.finalAck ?? false;
    this.elephantCap = Math.max(64, Math.floor(this.n * 0.05));
    this.budget = this.n;

    const chunk = opt(opts.chunkBytes, 4 << 20, "chunkBytes", 64 << 10, 1 << 30);
    this.mem = new Uint8Array(POOL_BYTES + chunk + MAX_RECORD);
    this.dv = new DataView(this.mem.buffer);
    this.outEnd = POOL_BYTES + chunk;
    this.prefix = new Float64Array(POOL_BYTES / 2 + 1);

    this.flowOfPacket = new Int32Array(this.n);
    this.wireLen = new Uint16Array(this.n);
    this.tsUs = new Float64Array(this.n);

    const rate = opt(opts.rate, 100000, "rate", 1, 1e9);
    if (opts.flows !== undefined) {
      opt(opts.flows, 1, "flows", 1, this.n);
      this.scale = this.solveScale(this.n / opts.flows);
    }
    this.meanArrivalUs = 1e6 * meanFlowSize(this, this.scale) / rate;
    const start = opt(opts.startTs, 1_700_000_000, "startTs", 0, 2 ** 32 - 1);
    this.startUs = Math.round(start * 1e6);
    this.buildPool();
    this.growFlows(1024);
    this.growSlots(1024);
    for (let h = 0; h < HOSTS_V4; h++) this.portStartV4[h] = -1;
    for (let h = 0; h < HOSTS_V6; h++) this.portStartV6[h] = -1;
  }

  startUs = 0;

  solveScale(targetMean: number): number {
    let lo = 0.02;
    let hi = 5000;
    if (meanFlowSize(this, lo) >= targetMean) return lo;
    if (meanFlowSize(this, hi) <= targetMean) return hi;
    for (let k = 0; k < 40; k++) {
      const mid = Math.sqrt(lo * hi);
      if (meanFlowSize(this, mid) < targetMean) lo = mid;
      else hi = mid;
    }
    return Math.sqrt(lo * hi);
  }

  drawApp(rng: Prng): number {
    if (rng.float() < this.nonIpShare) {
      return rng.chance(0.5) ? App.ArpBroadcast : App.ArpUnicast;
    }
    const u = rng.float();
    if (u < 0.5) return App.TcpWeb;
    if (u < 0.56) return App.TcpUpload;
    if (u < 0.64) return App.TcpInteractive;
    if (u < 0.9) return App.UdpDns;
    if (u < 0.93) return App.UdpBulk;
    return App.IcmpEcho;
  }

  drawSize(rng: Prng, app: number, scale: number): number {
    let n: number;
    switch (app) {
      case App.TcpWeb:
      case App.TcpUpload:
        // A few connection attempts are refused or unanswered.
        if (rng.chance(0.04)) return rng.range(1, 2);
        // Mice and elephants: a few percent of connections carry most of the bytes.
        n = rng.chance(0.03)
          ? Math.floor(rng.pareto(200 * scale, 1.2))
          : 3 + Math.floor(rng.pareto(3 * scale, 1.6));
        break;
      case App.TcpInteractive:
        n = 3 + Math.floor(rng.pareto(8 * scale, 1.3));
        break;
      case App.UdpDns: {
        const u = rng.float();
        return u < 0.85 ? 2 : u < 0.9 ? 1 : u < 0.97 ? 4 : 6;
      }
      case App.UdpBulk:
        n = Math.floor(rng.pareto(10 * scale, 1.05));
        break;
      case App.IcmpEcho:
        n = 2 * rng.range(1, 8);
        return rng.chance(0.1) ? n - 1 : n;
      case App.ArpBroadcast:
        return rng.range(1, 3);
      default:
        return rng.chance(0.8) ? 2 : 1;
    }
    return Math.max(1, Math.min(n, this.elephantCap));
  }

  buildPool(): void {
    const mem = this.mem;
    for (let k = 0; k < POOL_RANDOM; k += 4) {
      const r = this.rng.u32();
      mem[k] = r >>> 24;
      mem[k + 1] = r >>> 16;
      mem[k + 2] = r >>> 8;
      mem[k + 3] = r;
    }
    // DNS messages: per name an A query/response (even indexes) and an AAAA pair (odd).
    const count = DNS_NAMES.length * 2;
    this.dnsQueryOff = new Int32Array(count);
    this.dnsQueryLen = new Int32Array(count);
    this.dnsRespOff = new Int32Array(count);
    this.dnsRespLen = new Int32Array(count);
    for (let t = 0; t < count; t++) {
      const name = DNS_NAMES[t >> 1];
      const aaaa = (t & 1) === 1;
      this.dnsQueryOff[t] = this.poolUsed;
      this.dnsQueryLen[t] = this.writeDns(name, aaaa, false, t);
      this.dnsRespOff[t] = this.poolUsed;
      this.dnsRespLen[t] = this.writeDns(name, aaaa, true, t);
    }
    // HTTP on port 80 gets real requests and response headers: Wireshark flags random bytes
    // there as malformed HTTP. Response headers are followed by random body bytes.
    this.httpReqOff = new Int32Array(HTTP_REQUESTS);
    this.httpReqLen = new Int32Array(HTTP_REQUESTS);
    for (let t = 0; t < HTTP_REQUESTS; t++) {
      const host = DNS_NAMES[t % DNS_NAMES.length];
      const cookie = "0123456789abcdef".repeat(1 + t * 2).slice(0, 8 + t * 29);
      this.httpReqOff[t] = this.poolUsed;
      this.httpReqLen[t] = this.writeText(
        `GET /files/${t}/object-${t * 7919}.bin HTTP/1.1\r\nHost: ${host}\r\n` +
          `User-Agent: cutcap-gen/1\r\nAccept: */*\r\nCookie: id=${cookie}\r\n\r\n`,
      );
    }
    this.httpRespOff = this.poolUsed;
    this.httpRespLen = this.writeText(
      "HTTP/1.1 200 OK\r\nServer: cutcap-gen\r\nContent-Type: application/octet-stream\r\n" +
        "Connection: close\r\n\r\n",
    );
    for (let k = 0; k < 1500; k++) mem[this.poolUsed++] = this.rng.u32() & 0xff;
    let sum = 0;
    for (let w = 0; w < POOL_BYTES / 2; w++) {
      sum += (mem[2 * w] << 8) | mem[2 * w + 1];
      this.prefix[w + 1] = sum;
    }
  }

  /** Writes ASCII text at the pool's end (even offset); returns its length. */
  writeText(text: string): number {
    const start = this.poolUsed;
    for (let c = 0; c < text.length; c++) this.mem[start + c] = text.charCodeAt(c);
    this.poolUsed = (start + text.length + 1) & ~1;
    return text.length;
  }

  /** Writes a DNS message with id 0 at the pool's end (even offset); returns its length. */
  writeDns(name: string, aaaa: boolean, response: boolean, t: number): number {
    const mem = this.mem;
    const start = this.poolUsed;
    let p = start;
    const u16 = (v: number) => {
      mem[p++] = v >>> 8;
      mem[p++] = v & 0xff;
    };
    u16(0);
    u16(response ? 0x8180 : 0x0100);
    u16(1);
    u16(response ? 1 : 0);
    u16(0);
    u16(0);
    for (const label of name.split(".")) {
      mem[p++] = label.length;
      for (let c = 0; c < label.length; c++) mem[p++] = label.charCodeAt(c);
    }
    mem[p++] = 0;
    u16(aaaa ? 28 : 1);
    u16(1);
    if (response) {
      u16(0xc00c);
      u16(aaaa ? 28 : 1);
      u16(1);
      u16(0);
      u16(300);
      if (aaaa) {
        u16(16);
        u16(0x2001);
        u16(0x0db8);
        u16(0x0100);
        for (let k = 0; k < 4; k++) u16(0);
        u16(t);
      } else {
        u16(4);
        mem[p++] = 198;
        mem[p++] = 19;
        mem[p++] = 0;
        mem[p++] = 1 + t;
      }
    }
    const len = p - start;
    this.poolUsed = (p + 1) & ~1;
    return len;
  }

  growFlows(cap: number): void {
    const g = <T extends Float64Array | Int32Array | Uint8Array | Uint16Array | Uint32Array>(
      old: T,
      fresh: T,
    ): T => {
      fresh.set(old);
      return fresh;
    };
    this.fPackets = g(this.fPackets, new Float64Array(cap));
    this.fBytes = g(this.fBytes, new Float64Array(cap));
    this.fFirst = g(this.fFirst, new Int32Array(cap));
    this.fLast = g(this.fLast, new Int32Array(cap));
    this.fKind = g(this.fKind, new Uint8Array(cap));
    this.fProto = g(this.fProto, new Uint8Array(cap));
    this.fVlan = g(this.fVlan, new Uint16Array(cap));
    this.fInner = g(this.fInner, new Uint16Array(cap));
    this.fApp = g(this.fApp, new Uint8Array(cap));
    this.fIdle = g(this.fIdle, new Int32Array(cap));
    this.fKey = g(this.fKey, new Uint32Array(cap * TRUTH_KEY_WORDS));
    this.flowCap = cap;
  }

  growSlots(cap: number): void {
    const old = this.slotCap;
    const g = <T extends Float64Array | Int32Array | Uint8Array | Uint16Array | Uint32Array>(
      o: T,
      fresh: T,
    ): T => {
      fresh.set(o);
      return fresh;
    };
    this.heap = g(this.heap, new Int32Array(cap));
    this.sTime = g(this.sTime, new Float64Array(cap));
    this.sApp = g(this.sApp, new Uint8Array(cap));
    this.sV6 = g(this.sV6, new Uint8Array(cap));
    this.sQinq = g(this.sQinq, new Uint8Array(cap));
    this.sVlan = g(this.sVlan, new Uint16Array(cap));
    this.sInner = g(this.sInner, new Uint16Array(cap));
    this.sClient = g(this.sClient, new Int32Array(cap));
    this.sServer = g(this.sServer, new Int32Array(cap));
    this.sClientKind = g(this.sClientKind, new Uint8Array(cap));
    this.sCPort = g(this.sCPort, new Uint16Array(cap));
    this.sSPort = g(this.sSPort, new Uint16Array(cap));
    this.sN = g(this.sN, new Int32Array(cap));
    this.sI = g(this.sI, new Int32Array(cap));
    this.sFlow = g(this.sFlow, new Int32Array(cap));
    this.sSeqC = g(this.sSeqC, new Uint32Array(cap));
    this.sSeqS = g(this.sSeqS, new Uint32Array(cap));
    this.sIsnC = g(this.sIsnC, new Uint32Array(cap));
    this.sIpIdC = g(this.sIpIdC, new Uint16Array(cap));
    this.sIpIdS = g(this.sIpIdS, new Uint16Array(cap));
    this.sTtlS = g(this.sTtlS, new Uint8Array(cap));
    this.sLabel = g(this.sLabel, new Uint32Array(cap));
    this.sGap = g(this.sGap, new Float64Array(cap));
    this.sRtt = g(this.sRtt, new Float64Array(cap));
    this.sClose = g(this.sClose, new Uint8Array(cap));
    this.sCloseLen = g(this.sCloseLen, new Uint8Array(cap));
    this.sIdleAt = g(this.sIdleAt, new Int32Array(cap));
    this.sMss = g(this.sMss, new Uint16Array(cap));
    this.sTmpl = g(this.sTmpl, new Uint16Array(cap));
    this.sAux = g(this.sAux, new Uint16Array(cap));
    this.sWin = g(this.sWin, new Uint16Array(cap));
    const free = new Int32Array(cap);
    free.set(this.free.subarray(0, this.freeTop));
    // New slots go on the free stack highest first, so low slots are used first.
    for (let s = cap - 1; s >= old; s--) free[this.freeTop++] = s;
    this.free = free;
    this.slotCap = cap;
  }

  run(): TrafficTruth {
    const header = new Uint8Array(24);
    const hv = new DataView(header.buffer);
    hv.setUint32(0, this.nanosecond ? 0xa1b23c4d : 0xa1b2c3d4, true);
    hv.setUint16(4, 2, true);
    hv.setUint16(6, 4, true);
    hv.setUint32(16, this.snaplen === 0 ? DEFAULT_SNAPLEN : this.snaplen, true);
    hv.setUint32(20, 1, true);
    this.sink(header);
    this.fileBytes = 24;

    let nextArrival = this.startUs;
    const n = this.n;
    while (this.emitted < n) {
      if (this.budget > 0 && (this.heapSize === 0 || nextArrival <= this.sTime[this.heap[0]])) {
        this.startFlow(nextArrival);
        nextArrival += Math.round(this.rng.exp(this.meanArrivalUs));
        continue;
      }
      this.step();
    }
    this.flush();
    const c = this.flowCount;
    let totalBytes = 0;
    for (let f = 0; f < c; f++) totalBytes += this.fBytes[f];
    return {
      packets: n,
      flowOfPacket: this.flowOfPacket,
      wireLen: this.wireLen,
      tsUs: this.tsUs,
      flows: {
        count: c,
        packets: this.fPackets.slice(0, c),
        bytes: this.fBytes.slice(0, c),
        firstPacket: this.fFirst.slice(0, c),
        lastPacket: this.fLast.slice(0, c),
        kind: this.fKind.slice(0, c),
        proto: this.fProto.slice(0, c),
        vlan: this.fVlan.slice(0, c),
        innerVlan: this.fInner.slice(0, c),
        app: this.fApp.slice(0, c),
        idleGapAfter: this.fIdle.slice(0, c),
        key: this.fKey.slice(0, c * TRUTH_KEY_WORDS),
      },
      totalBytes,
      fileBytes: this.fileBytes,
      linkType: 1,
      snaplen: this.snaplen === 0 ? DEFAULT_SNAPLEN : this.snaplen,
      nanosecond: this.nanosecond,
    };
  }

  flush(): void {
    if (this.pos > this.outStart) {
      this.sink(this.mem.subarray(this.outStart, this.pos));
      this.fileBytes += this.pos - this.outStart;
      this.pos = this.outStart;
    }
  }

  /** Gives flow slot s a client host and one of its unused ephemeral ports. */
  takePort(s: number, v6: boolean): void {
    const hosts = v6 ? HOSTS_V6 : HOSTS_V4;
    const start = v6 ? this.portStartV6 : this.portStartV4;
    const used = v6 ? this.portUsedV6 : this.portUsedV4;
    let h = this.rng.int(hosts);
    for (let k = 0; used[h] >= PORTS_PER_HOST; k++) {
      if (k === hosts) {
        throw new Error(`Out of client ports: expected at most ${hosts * PORTS_PER_HOST} flows`);
      }
      h = (h + 1) % hosts;
    }
    if (start[h] < 0) start[h] = this.rng.range(32768 - 1024, 60999 - 1024);
    this.sClient[s] = h;
    this.sClientKind[s] = 0;
    this.sCPort[s] = 1024 + (start[h] + used[h]++) % PORTS_PER_HOST;
  }

  startFlow(t: number): void {
    const rng = this.rng;
    if (this.freeTop === 0) this.growSlots(this.slotCap * 2);
    const s = this.free[--this.freeTop];
    const app = this.drawApp(rng);
    let n = this.drawSize(rng, app, this.scale);
    if (n > this.budget) n = this.budget;
    this.budget -= n;
    this.arrivals++;
    this.sApp[s] = app;
    this.sN[s] = n;
    this.sI[s] = 0;
    this.sFlow[s] = -1;
    this.sTime[s] = t;

    // VLAN tagging is per flow: every packet of a conversation carries the same tags.
    const tagged = rng.chance(this.vlanShare);
    const qinq = tagged && rng.chance(this.qinqShare);
    this.sQinq[s] = qinq ? 1 : 0;
    this.sVlan[s] = tagged ? (qinq ? rng.range(100, 120) : 10 * rng.range(1, 40)) : 0;
    this.sInner[s] = qinq ? rng.range(2, 4094) : 0;

    const rtt = Math.min(500000, Math.max(200, rng.logNormal(20000, 1)));
    this.sRtt[s] = rtt;
    this.sTtlS[s] = rng.chance(0.5) ? rng.range(50, 60) : rng.range(110, 120);
    this.sIpIdC[s] = rng.int(65536);
    this.sIpIdS[s] = rng.int(65536);
    this.sLabel[s] = rng.int(1 << 20);
    this.sIdleAt[s] = -1;
    this.sClose[s] = CLOSE_NONE;
    this.sCloseLen[s] = 0;
    // Servers follow a heavy-tailed popularity.
    this.sServer[s] = Math.min(SERVERS - 1, Math.floor(rng.pareto(1, 0.8)) - 1);

    let v6 = false;
    if (app === App.ArpBroadcast || app === App.ArpUnicast) {
      this.sClient[s] = this.arpCount++;
      this.sClientKind[s] = 3;
      this.sGap[s] = 1e6;
    } else {
      v6 = rng.chance(this.ipv6Share);
      if (app === App.IcmpEcho) {
        if (!v6 && this.icmpV4 >= ICMP_V4_CLIENTS) v6 = true;
        this.sClient[s] = v6 ? this.icmpV6++ : this.icmpV4++;
        this.sClientKind[s] = 1;
        this.sAux[s] = rng.int(65536);
        this.sGap[s] = 1e6;
      } else {
        this.takePort(s, v6);
      }
    }
    this.sV6[s] = v6 ? 1 : 0;
    this.sMss[s] = v6 ? 1440 : 1460;

    switch (app) {
      case App.TcpWeb:
      case App.TcpUpload:
      case App.TcpInteractive: {
        // Random payload passes as TLS on 443; port 80 flows carry real HTTP headers.
        this.sSPort[s] = app === App.TcpWeb && rng.chance(0.3) ? 80 : 443;
        this.sTmpl[s] = rng.int(HTTP_REQUESTS);
        this.sAux[s] = 0;
        this.sIsnC[s] = rng.u32();
        this.sSeqC[s] = this.sIsnC[s];
        this.sSeqS[s] = rng.u32();
        this.sWin[s] = rng.chance(0.5) ? 64240 : 65160;
        let close = rng.chance(0.85)
          ? CLOSE_FIN
          : rng.chance(0.5)
          ? CLOSE_RST_CLIENT
          : CLOSE_RST_SERVER;
        let closeLen = close === CLOSE_FIN ? (this.finalAck ? 3 : 2) : 1;
        if (n - 3 < closeLen) {
          close = n - 3 >= 1 ? CLOSE_RST_CLIENT : CLOSE_NONE;
          closeLen = close === CLOSE_NONE ? 0 : 1;
        }
        this.sClose[s] = close;
        this.sCloseLen[s] = closeLen;
        // Elephants go faster, but not proportionally to their size.
        const duration = Math.min(120e6, rng.logNormal(200000, 1) * Math.pow(n / 10, 0.35));
        this.sGap[s] = app === App.TcpInteractive
          ? rng.logNormal(150000, 1)
          : Math.max(5, duration / n);
        break;
      }
      case App.UdpDns:
        this.sSPort[s] = 53;
        this.sTmpl[s] = 2 * rng.int(DNS_NAMES.length) + (v6 ? 1 : 0);
        this.sAux[s] = rng.int(65536);
        this.sGap[s] = 2e6;
        break;
      case App.UdpBulk: {
        // WireGuard transport data: Wireshark's heuristic dissectors misread random UDP
        // payload as other protocols and then flag it malformed.
        this.sSPort[s] = 51820;
        const duration = Math.min(120e6, rng.logNormal(500000, 1) * Math.pow(n / 10, 0.35));
        this.sGap[s] = Math.max(5, duration / n);
        break;
      }
      default:
        this.sSPort[s] = 0;
    }
    // Bound flow durations so the capture does not end with hours of a few slow flows.
    if (this.sGap[s] * n > MAX_FLOW_US) this.sGap[s] = MAX_FLOW_US / n;
    if (this.sGap[s] > this.gapCapUs / 4) this.sGap[s] = this.gapCapUs / 4;

    if (this.idleGapEvery > 0 && n >= 4 && this.arrivals % this.idleGapEvery === 0) {
      this.sIdleAt[s] = n >> 1;
    }

    // Heap push.
    let k = this.heapSize++;
    const heap = this.heap;
    const time = this.sTime;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (time[heap[parent]] <= t) break;
      heap[k] = heap[parent];
      k = parent;
    }
    heap[k] = s;
  }

  /** Emits the next packet of the earliest flow and reschedules or retires it. */
  step(): void {
    const s = this.heap[0];
    const t = this.sTime[s];
    const i = this.sI[s];
    if (i === 0) this.openFlow(s);
    this.emit(s, i, t);
    const next = i + 1;
    this.sI[s] = next;
    if (next >= this.sN[s]) {
      this.free[this.freeTop++] = s;
      const last = this.heap[--this.heapSize];
      if (this.heapSize > 0) this.siftDown(last);
      return;
    }
    this.sTime[s] = t + this.gapAfter(s, i);
    this.siftDown(s);
  }

  siftDown(s: number): void {
    const heap = this.heap;
    const time = this.sTime;
    const size = this.heapSize;
    const ts = time[s];
    let k = 0;
    for (;;) {
      let c = 2 * k + 1;
      if (c >= size) break;
      if (c + 1 < size && time[heap[c + 1]] < time[heap[c]]) c++;
      if (time[heap[c]] >= ts) break;
      heap[k] = heap[c];
      k = c;
    }
    heap[k] = s;
  }

  gapAfter(s: number, i: number): number {
    if (i === this.sIdleAt[s]) return this.idleGapUs;
    const rng = this.rng;
    const app = this.sApp[s];
    let gap: number;
    switch (app) {
      case App.TcpWeb:
      case App.TcpUpload:
      case App.TcpInteractive:
        if (i === 0) gap = this.sRtt[s];
        else if (i === 1) gap = 5 + rng.exp(this.sRtt[s] * 0.02);
        else gap = rng.exp(this.sGap[s]);
        break;
      case App.UdpDns:
      case App.IcmpEcho:
      case App.ArpUnicast:
        // Request then reply after a round trip; the next request after the interval.
        gap = (i & 1) === 0
          ? this.sRtt[s] * (app === App.ArpUnicast ? 0.05 : 1)
          : rng.exp(this.sGap[s]);
        break;
      default:
        gap = rng.exp(this.sGap[s]);
    }
    return gap > this.gapCapUs ? this.gapCapUs : Math.round(gap);
  }

  /** Assigns the flow number at its first packet, so flow numbers follow first-packet order. */
  openFlow(s: number): void {
    if (this.flowCount === this.flowCap) this.growFlows(this.flowCap * 2);
    const f = this.flowCount++;
    this.sFlow[s] = f;
    const app = this.sApp[s];
    const v6 = this.sV6[s] === 1;
    const isArp = app === App.ArpBroadcast || app === App.ArpUnicast;
    const proto = isArp
      ? 0
      : app === App.IcmpEcho
      ? (v6 ? 58 : 1)
      : app === App.UdpDns || app === App.UdpBulk
      ? 17
      : 6;
    const kind = isArp ? TruthKind.L2 : v6 ? TruthKind.Ipv6 : TruthKind.Ipv4;
    this.fPackets[f] = 0;
    this.fBytes[f] = 0;
    this.fFirst[f] = this.emitted;
    this.fKind[f] = kind;
    this.fProto[f] = proto;
    this.fVlan[f] = this.sVlan[s];
    this.fInner[f] = this.sInner[s];
    this.fApp[f] = app;
    this.fIdle[f] = this.sIdleAt[s];
    const key = this.fKey;
    const k = f * TRUTH_KEY_WORDS;
    if (isArp) {
      const a = this.sClient[s];
      key[k] = ((0x02 << 24) | (MAC_ARP_A << 16) | (a >>> 16)) >>> 0;
      key[k + 1] = ((a & 0xffff) << 16) >>> 0;
      if (app === App.ArpBroadcast) {
        key[k + 4] = 0xffffffff;
        key[k + 5] = 0xffff0000;
      } else {
        key[k + 4] = ((0x02 << 24) | (MAC_ARP_B << 16) | (a >>> 16)) >>> 0;
        key[k + 5] = ((a & 0xffff) << 16) >>> 0;
      }
      key[k + 8] = 0x0806;
    } else {
      this.addrWords(key, k, v6, this.sClientKind[s], this.sClient[s]);
      this.addrWords(key, k + 4, v6, 2, this.sServer[s]);
      // ICMP echo: the decoder keys type and counter-type as ports (Community ID's mapping).
      key[k + 8] = app === App.IcmpEcho
        ? (v6 ? (128 << 16) | 129 : 8 << 16)
        : ((this.sCPort[s] << 16) | this.sSPort[s]) >>> 0;
    }
    key[k + 9] = ((kind << 28) | (proto << 16) | this.sVlan[s]) >>> 0;
  }

  /** Address of a host: kind 0 = TCP/UDP client, 1 = ICMP client, 2 = server. */
  addrWords(key: Uint32Array, k: number, v6: boolean, kind: number, idx: number): void {
    if (v6) {
      key[k] = 0x20010db8;
      key[k + 1] = kind === 2 ? 0x01000000 : kind === 1 ? 0x00020000 : 0x00010000;
      key[k + 2] = 0;
      // Host numbers start at 1: ::0 of a subnet is the subnet-router anycast address.
      key[k + 3] = (idx + 1) >>> 0;
    } else {
      key[k] = this.v4(kind, idx);
      key[k + 1] = 0;
      key[k + 2] = 0;
      key[k + 3] = 0;
    }
  }

  /** IPv4 address value; .0 and .255 are skipped so every address looks like a host. */
  v4(kind: number, idx: number): number {
    // 198.18.0.0/17 clients, 198.18.128.0/17 ICMP clients, 198.19.0.0/16 servers.
    const base = kind === 2 ? 0xc6130000 : kind === 1 ? 0xc6128000 : 0xc6120000;
    return (base + Math.floor(idx / 254) * 256 + (idx % 254) + 1) >>> 0;
  }

  writeAddr(p: number, v6: boolean, kind: number, idx: number): void {
    const mem = this.mem;
    if (v6) {
      mem.fill(0, p, p + 16);
      mem[p] = 0x20;
      mem[p + 1] = 0x01;
      mem[p + 2] = 0x0d;
      mem[p + 3] = 0xb8;
      if (kind === 2) mem[p + 4] = 0x01;
      else mem[p + 5] = kind === 1 ? 2 : 1;
      this.dv.setUint32(p + 12, (idx + 1) >>> 0);
    } else {
      this.dv.setUint32(p, this.v4(kind, idx));
    }
  }

  writeMac(p: number, prefix: number, idx: number): void {
    this.mem[p] = 0x02;
    this.mem[p + 1] = prefix;
    this.dv.setUint32(p + 2, idx >>> 0);
  }

  /** Sum of big-endian 16-bit words of mem[p, p+len), len even. */
  sumWords(p: number, len: number): number {
    const mem = this.mem;
    let sum = 0;
    for (let k = 0; k < len; k += 2) sum += (mem[p + k] << 8) | mem[p + k + 1];
    return sum;
  }

  /** Word sum of a pool payload (its offset is even, like its place in the segment). */
  paySum(src: number, len: number): number {
    const w = src >> 1;
    const words = len >> 1;
    let sum = this.prefix[w + words] - this.prefix[w];
    if ((len & 1) === 1) sum += this.mem[src + len - 1] << 8;
    return sum;
  }

  /** Decides what packet i of flow s is (direction, flags, payload) into the scratch fields. */
  plan(s: number, i: number): void {
    const rng = this.rng;
    const app = this.sApp[s];
    const n = this.sN[s];
    this.payPatch = 0;
    this.patchOn = false;
    this.payLen = 0;
    this.paySrc = 0;
    switch (app) {
      case App.TcpWeb:
      case App.TcpUpload:
      case App.TcpInteractive:
        this.l4 = L4_TCP;
        this.planTcp(s, i, n, app);
        return;
      case App.UdpDns: {
        this.l4 = L4_UDP;
        this.fromServer = (i & 1) === 1;
        const t = this.sTmpl[s];
        this.paySrc = this.fromServer ? this.dnsRespOff[t] : this.dnsQueryOff[t];
        this.payLen = this.fromServer ? this.dnsRespLen[t] : this.dnsQueryLen[t];
        // Each query/response pair has its own transaction id; the template's id word is 0.
        this.payPatch = (this.sAux[s] + (i >> 1)) & 0xffff;
        this.patchOn = true;
        return;
      }
      case App.UdpBulk: {
        this.l4 = L4_UDP;
        this.fromServer = rng.chance(0.1);
        // Encrypted data plus tag, in 16-byte blocks, after the 16-byte WireGuard header.
        const maxBlocks = this.sV6[s] === 1 ? 89 : 91;
        this.payLen = 16 * (rng.chance(0.8) ? rng.range(75, maxBlocks) : rng.range(1, 12));
        this.paySrc = this.randomSrc();
        return;
      }
      case App.IcmpEcho:
        this.l4 = L4_ICMP;
        this.fromServer = (i & 1) === 1;
        this.icmpType = this.sV6[s] === 1
          ? (this.fromServer ? 129 : 128)
          : (this.fromServer ? 0 : 8);
        this.icmpSeq = (i >> 1) + 1;
        this.payLen = 56;
        // Request and reply carry the same data, as real echo does.
        this.paySrc = (((this.sAux[s] * 64 + this.icmpSeq * 2) % (POOL_RANDOM - 64)) >> 1) << 1;
        return;
      case App.ArpBroadcast:
        this.l4 = L4_ARP;
        this.fromServer = false;
        this.arpOp = 1;
        return;
      default:
        this.l4 = L4_ARP;
        this.fromServer = (i & 1) === 1;
        this.arpOp = this.fromServer ? 2 : 1;
    }
  }

  randomSrc(): number {
    return this.rng.int((POOL_RANDOM - 1536) >> 1) << 1;
  }

  planTcp(s: number, i: number, n: number, app: number): void {
    const rng = this.rng;
    this.tcpSynOpts = false;
    if (i === 0) {
      this.fromServer = false;
      this.tcpFlags = TCP_SYN;
      this.tcpSeq = this.sIsnC[s];
      this.tcpAck = 0;
      this.tcpSynOpts = true;
      this.sSeqC[s] = this.sIsnC[s] + 1;
      return;
    }
    if (n === 2) {
      // Connection refused.
      this.fromServer = true;
      this.tcpFlags = TCP_RST | TCP_ACK;
      this.tcpSeq = 0;
      this.tcpAck = this.sSeqC[s];
      return;
    }
    if (i === 1) {
      this.fromServer = true;
      this.tcpFlags = TCP_SYN | TCP_ACK;
      this.tcpSeq = this.sSeqS[s];
      this.tcpAck = this.sSeqC[s];
      this.tcpSynOpts = true;
      this.sSeqS[s] = this.sSeqS[s] + 1;
      return;
    }
    if (i === 2) {
      this.fromServer = false;
      this.tcpFlags = TCP_ACK;
      this.tcpSeq = this.sSeqC[s];
      this.tcpAck = this.sSeqS[s];
      return;
    }
    const tail = n - i;
    const close = this.sClose[s];
    const closeLen = this.sCloseLen[s];
    if (tail <= closeLen) {
      if (close === CLOSE_FIN) {
        const k = closeLen - tail;
        this.fromServer = k === 1;
        this.tcpFlags = k === 2 ? TCP_ACK : TCP_FIN | TCP_ACK;
      } else {
        this.fromServer = close === CLOSE_RST_SERVER;
        this.tcpFlags = TCP_RST | TCP_ACK;
      }
      this.setSeq(s, 0);
      if ((this.tcpFlags & TCP_FIN) !== 0) {
        if (this.fromServer) this.sSeqS[s] = this.sSeqS[s] + 1;
        else this.sSeqC[s] = this.sSeqC[s] + 1;
      }
      return;
    }
    const mss = this.sMss[s];
    const http = this.sSPort[s] === 80;
    let len: number;
    if (i === 3) {
      // The client speaks first: a request.
      this.fromServer = false;
      len = app === App.TcpInteractive ? rng.range(20, 120) : rng.range(100, 600);
    } else if (app === App.TcpInteractive) {
      this.fromServer = rng.chance(0.5);
      len = rng.chance(0.7) ? rng.range(1, 200) : 0;
    } else {
      const bulkFromServer = app === App.TcpWeb;
      const bulk = rng.chance(0.7);
      this.fromServer = bulk === bulkFromServer;
      if (bulk) len = rng.chance(0.85) ? mss : rng.range(1, mss);
      else len = rng.chance(0.85) || http ? 0 : rng.range(1, 400);
    }
    this.paySrc = len > 0 ? this.randomSrc() : 0;
    if (http && i === 3) {
      this.paySrc = this.httpReqOff[this.sTmpl[s]];
      len = this.httpReqLen[this.sTmpl[s]];
    } else if (http && this.fromServer && len > 0 && this.sAux[s] === 0) {
      // The first server bytes start with the response header.
      this.sAux[s] = 1;
      this.paySrc = this.httpRespOff;
      if (len < this.httpRespLen) len = this.httpRespLen;
    }
    this.payLen = len;
    this.tcpFlags = TCP_ACK | (len > 0 && len < mss ? TCP_PSH : 0);
    this.setSeq(s, len);
  }

  setSeq(s: number, len: number): void {
    if (this.fromServer) {
      this.tcpSeq = this.sSeqS[s];
      this.tcpAck = this.sSeqC[s];
      this.sSeqS[s] = this.sSeqS[s] + len;
    } else {
      this.tcpSeq = this.sSeqC[s];
      this.tcpAck = this.sSeqS[s];
      this.sSeqC[s] = this.sSeqC[s] + len;
    }
  }

  /** Writes packet i of flow s with timestamp t as one pcap record. */
  emit(s: number, i: number, t: number): void {
    this.plan(s, i);
    if (this.pos + MAX_RECORD > this.outEnd) this.flush();
    const mem = this.mem;
    const dv = this.dv;
    const rec = this.pos;
    const f0 = rec + 16;
    const fromServer = this.fromServer;
    const v6 = this.sV6[s] === 1;
    const l4 = this.l4;
    let p = f0;

    // Ethernet: IP flows are between the client's MAC and the server's (or router's) MAC.
    if (l4 === L4_ARP) {
      const a = this.sClient[s];
      if (this.sApp[s] === App.ArpBroadcast) {
        mem.fill(0xff, p, p + 6);
        this.writeMac(p + 6, MAC_ARP_A, a);
      } else if (fromServer) {
        this.writeMac(p, MAC_ARP_A, a);
        this.writeMac(p + 6, MAC_ARP_B, a);
      } else {
        this.writeMac(p, MAC_ARP_B, a);
        this.writeMac(p + 6, MAC_ARP_A, a);
      }
    } else {
      const cPrefix = this.sClientKind[s] === 1 ? MAC_ICMP_CLIENT : MAC_CLIENT;
      const c = this.sClient[s];
      const srv = this.sServer[s];
      if (fromServer) {
        this.writeMac(p, cPrefix, c);
        this.writeMac(p + 6, MAC_SERVER, srv);
      } else {
        this.writeMac(p, MAC_SERVER, srv);
        this.writeMac(p + 6, cPrefix, c);
      }
    }
    p += 12;
    const vlan = this.sVlan[s];
    if (vlan !== 0) {
      if (this.sQinq[s] === 1) {
        dv.setUint16(p, 0x88a8);
        dv.setUint16(p + 2, vlan);
        dv.setUint16(p + 4, 0x8100);
        dv.setUint16(p + 6, this.sInner[s]);
        p += 8;
      } else {
        dv.setUint16(p, 0x8100);
        dv.setUint16(p + 2, vlan);
        p += 4;
      }
    }
    let end: number;
    if (l4 === L4_ARP) {
      dv.setUint16(p, 0x0806);
      p += 2;
      end = this.writeArp(s, p);
    } else {
      dv.setUint16(p, v6 ? 0x86dd : 0x0800);
      p += 2;
      end = this.writeIp(s, p, v6);
    }

    let len = end - f0;
    if (len < MIN_FRAME) {
      mem.fill(0, end, f0 + MIN_FRAME);
      len = MIN_FRAME;
    }
    const cap = this.snaplen !== 0 && len > this.snaplen ? this.snaplen : len;
    const sec = Math.floor(t / 1e6);
    const frac = t - sec * 1e6;
    dv.setUint32(rec, sec, true);
    dv.setUint32(rec + 4, this.nanosecond ? frac * 1000 : frac, true);
    dv.setUint32(rec + 8, cap, true);
    dv.setUint32(rec + 12, len, true);
    this.pos = f0 + cap;

    const pk = this.emitted++;
    const f = this.sFlow[s];
    this.flowOfPacket[pk] = f;
    this.wireLen[pk] = len;
    this.tsUs[pk] = t;
    this.fPackets[f] += 1;
    this.fBytes[f] += len;
    this.fLast[f] = pk;
  }

  writeArp(s: number, p: number): number {
    const mem = this.mem;
    const dv = this.dv;
    const a = this.sClient[s];
    const reply = this.arpOp === 2;
    dv.setUint16(p, 1);
    dv.setUint16(p + 2, 0x0800);
    mem[p + 4] = 6;
    mem[p + 5] = 4;
    dv.setUint16(p + 6, this.arpOp);
    // Sender and target: A asks for B's address, B answers. B's addresses (198.19.128.0/17)
    // are unused by IP flows, and both are unique per ARP flow, so no IP has two MACs.
    const ipA = this.v4(0, a % ARP_HOSTS);
    const ipB = this.v4(2, ARP_HOSTS + (a % ARP_HOSTS));
    this.writeMac(p + 8, reply ? MAC_ARP_B : MAC_ARP_A, a);
    dv.setUint32(p + 14, reply ? ipB : ipA);
    if (reply) this.writeMac(p + 18, MAC_ARP_A, a);
    else mem.fill(0, p + 18, p + 24);
    dv.setUint32(p + 24, reply ? ipA : ipB);
    return p + 28;
  }

  writeIp(s: number, p: number, v6: boolean): number {
    const mem = this.mem;
    const dv = this.dv;
    const fromServer = this.fromServer;
    const l4 = this.l4;
    const cKind = this.sClientKind[s];
    const c = this.sClient[s];
    const srv = this.sServer[s];
    const wg = this.sApp[s] === App.UdpBulk;
    const l4Hdr = l4 === L4_TCP ? (this.tcpSynOpts ? 32 : 20) : wg ? 8 + WG_HEADER : 8;
    const l4Len = l4Hdr + this.payLen;
    const proto = l4 === L4_TCP ? 6 : l4 === L4_UDP ? 17 : v6 ? 58 : 1;
    const ipHdr = v6 ? 40 : 20;
    let pseudo: number;
    if (v6) {
      dv.setUint32(p, 0x60000000 | this.sLabel[s]);
      dv.setUint16(p + 4, l4Len);
      mem[p + 6] = proto;
      mem[p + 7] = fromServer ? this.sTtlS[s] : 64;
      this.writeAddr(p + 8, true, fromServer ? 2 : cKind, fromServer ? srv : c);
      this.writeAddr(p + 24, true, fromServer ? cKind : 2, fromServer ? c : srv);
      pseudo = this.sumWords(p + 8, 32) + l4Len + proto;
    } else {
      mem[p] = 0x45;
      mem[p + 1] = 0;
      dv.setUint16(p + 2, ipHdr + l4Len);
      let id: number;
      if (fromServer) id = this.sIpIdS[s]++;
      else id = this.sIpIdC[s]++;
      dv.setUint16(p + 4, id);
      dv.setUint16(p + 6, this.sApp[s] === App.UdpDns ? 0 : 0x4000);
      mem[p + 8] = fromServer ? this.sTtlS[s] : 64;
      mem[p + 9] = proto;
      dv.setUint16(p + 10, 0);
      this.writeAddr(p + 12, false, fromServer ? 2 : cKind, fromServer ? srv : c);
      this.writeAddr(p + 16, false, fromServer ? cKind : 2, fromServer ? c : srv);
      dv.setUint16(p + 10, fold(this.sumWords(p, 20)));
      pseudo = this.sumWords(p + 12, 8) + l4Len + proto;
    }
    const h = p + ipHdr;
    const body = h + l4Hdr;
    let ckOff: number;
    if (l4 === L4_TCP) {
      dv.setUint16(h, fromServer ? this.sSPort[s] : this.sCPort[s]);
      dv.setUint16(h + 2, fromServer ? this.sCPort[s] : this.sSPort[s]);
      dv.setUint32(h + 4, this.tcpSeq >>> 0);
      dv.setUint32(h + 8, this.tcpAck >>> 0);
      mem[h + 12] = (l4Hdr / 4) << 4;
      mem[h + 13] = this.tcpFlags;
      dv.setUint16(h + 14, (this.tcpFlags & TCP_RST) !== 0 ? 0 : this.sWin[s]);
      dv.setUint32(h + 16, 0);
      if (this.tcpSynOpts) {
        // MSS, NOP, window scale 7, NOP, NOP, SACK permitted.
        dv.setUint32(h + 20, 0x02040000 | this.sMss[s]);
        dv.setUint32(h + 24, 0x01030307);
        dv.setUint32(h + 28, 0x01010402);
      }
      ckOff = h + 16;
    } else if (l4 === L4_UDP) {
      dv.setUint16(h, fromServer ? this.sSPort[s] : this.sCPort[s]);
      dv.setUint16(h + 2, fromServer ? this.sCPort[s] : this.sSPort[s]);
      dv.setUint16(h + 4, l4Len);
      dv.setUint16(h + 6, 0);
      ckOff = h + 6;
      if (wg) {
        // Type 4 (transport data), 3 reserved zero bytes, receiver index, 64-bit counter.
        dv.setUint32(h + 8, 0x04000000);
        dv.setUint32(h + 12, fromServer ? this.sLabel[s] : this.sLabel[s] ^ 0x5a5a5);
        dv.setUint32(h + 16, 0);
        dv.setUint32(h + 20, this.sI[s]);
      }
    } else {
      mem[h] = this.icmpType;
      mem[h + 1] = 0;
      dv.setUint16(h + 2, 0);
      dv.setUint16(h + 4, this.sAux[s]);
      dv.setUint16(h + 6, this.icmpSeq);
      ckOff = h + 2;
      if (!v6) pseudo = 0;
    }
    const payLen = this.payLen;
    if (payLen > 0) {
      // Copy only what the snaplen keeps; the checksum still covers the whole payload.
      let copy = payLen;
      if (this.snaplen !== 0) {
        const room = this.snaplen - (body - (this.pos + 16));
        if (room < copy) copy = room < 0 ? 0 : room;
      }
      if (copy > 0) mem.copyWithin(body, this.paySrc, this.paySrc + copy);
      if (this.patchOn) dv.setUint16(body, this.payPatch);
    }
    let sum = pseudo + this.sumWords(h, l4Hdr) + this.paySum(this.paySrc, payLen);
    if (this.patchOn) {
      // Replace the pool's first payload word by the patch: add it, subtract (add ~) the old one.
      const old = (mem[this.paySrc] << 8) | mem[this.paySrc + 1];
      sum += this.payPatch + (0xffff - old);
    }
    let ck = fold(sum);
    if (ck === 0 && l4 === L4_UDP) ck = 0xffff;
    dv.setUint16(ckOff, ck);
    return body + payLen;
  }
}

/** Ones'-complement checksum of a word sum. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}
