/**
 * The afpacket capture method: an AF_PACKET socket with a TPACKET_V3 receive ring mapped into the
 * worker's memory and read in JavaScript. The kernel fills blocks of packets and sets a block's
 * status to TP_STATUS_USER when it is done with it (full, or retired by the block timeout);
 * `next()` walks the current block's packets over one long-lived view of the whole ring and hands
 * the block back (TP_STATUS_KERNEL) when it moves on to the next. A busy link therefore costs no
 * system or library call per packet: poll(2) runs only when the next block is not ready yet.
 *
 * What comes out is what libpcap 1.10 hands over on Linux (pcap-linux.c), so a file is the same
 * whichever method wrote it:
 * - the BPF filter is compiled by libpcap for this interface (see compileFilter below) and runs in
 *   the kernel (SO_ATTACH_FILTER), before the ring;
 * - the kernel strips the outer VLAN tag into the ring header; it goes back between the MAC
 *   addresses and the EtherType when TP_STATUS_VLAN_VALID is set or the TCI is not 0, with the
 *   TPID from the header when it is set or TP_STATUS_VLAN_TPID_VALID says so (else 0x8100), and
 *   both lengths grow by 4; the snapshot length is applied after that;
 * - microseconds are the ring's nanoseconds / 1000, rounded down; the socket asks for receive
 *   timestamps (SO_TIMESTAMPNS), so the time is taken once when the packet reaches the stack and
 *   every capture on the host sees the same one;
 * - on the loopback device, outgoing copies are skipped (each packet also arrives as incoming);
 * - counters: PACKET_STATISTICS (reset by every read, so summed here: received includes the
 *   dropped, as in libpcap), interface drops from sysfs rx_missed_errors + rx_fifo_errors;
 * - ENETDOWN on the socket: the interface went down or away; while it is down the socket is
 *   polled every millisecond until packets come again, the interface is up, or it is gone
 *   ("The interface disappeared", which makes the worker reopen it).
 *
 * Layouts (linux/if_packet.h, x86_64): block descriptor: version @0, offset_to_priv @4,
 * block_status @8, num_pkts @12, offset_to_first_pkt @16, blk_len @20. tpacket3_hdr:
 * tp_next_offset @0, tp_sec @4, tp_nsec @8, tp_snaplen @12, tp_len @16, tp_status @20, tp_mac
 * (u16) @24, tp_vlan_tci @32, tp_vlan_tpid (u16) @36; then a sockaddr_ll @48 (ifindex @52,
 * pkttype @58).
 *
 * @module
 */

import {
  bind,
  closeFd,
  getsockname,
  getsockopt,
  interfaceIndex,
  ioctl,
  LibcError,
  mapShared,
  POLLERR,
  pollEvents,
  POLLHUP,
  POLLNVAL,
  POLLRDHUP,
  setsockopt,
  SOCK_CLOEXEC,
  socket,
  strerror,
  unmap,
} from "../../ffi/libc.ts";
import { type LiveOptions, PcapHandle, type PcapStats } from "../../ffi/libpcap.ts";
import { MAX_CAPLEN } from "../pcap/format.ts";

const AF_PACKET = 17;
const SOCK_RAW = 3;
const ETH_P_ALL = 3;
const SOL_SOCKET = 1;
const SO_ERROR = 4;
const SO_ATTACH_FILTER = 26;
const SO_TIMESTAMPNS = 35;
const SOL_PACKET = 263;
const PACKET_ADD_MEMBERSHIP = 1;
const PACKET_RX_RING = 5;
const PACKET_STATISTICS = 6;
const PACKET_VERSION = 10;
const PACKET_RESERVE = 12;
const TPACKET_V3 = 2;
const PACKET_MR_PROMISC = 1;
const PACKET_OUTGOING = 4;
const SIOCGIFFLAGS = 0x8913;
const SIOCGIFHWADDR = 0x8927;
const IFF_UP = 1;
const ARPHRD_ETHER = 1;
const ARPHRD_LOOPBACK = 772;
const LINKTYPE_ETHERNET = 1;
const TP_STATUS_KERNEL = 0;
const TP_STATUS_USER = 1;
const TP_STATUS_VLAN_VALID = 0x10;
const TP_STATUS_VLAN_TPID_VALID = 0x40;
const ETH_P_8021Q = 0x8100;
/** Where a VLAN tag goes in an Ethernet frame: after the two MAC addresses. */
const VLAN_OFFSET = 12;
const VLAN_TAG_LEN = 4;
const ENOMEM = 12;
const ENETDOWN = 100;
const EPERM = 1;
const EACCES = 13;
const ENODEV = 19;
const ENXIO = 6;
/** Longest interface name the kernel takes (IFNAMSIZ - 1). */
const MAX_IFNAME = 15;

const PAGE = 4096;
/** Ring header, sockaddr_ll, alignment and PACKET_RESERVE in front of a packet, and the block header. */
const FRAME_OVERHEAD = 256;
/**
 * Blocks grow to 1 MiB while the ring keeps {@link MIN_BLOCKS} of them, and on to 4 MiB only while
 * it keeps {@link STALL_BLOCKS}. Every block handed over costs the worker a wake-up from poll(2) at
 * moderate rates, so big blocks save CPU (4 MiB ones 6-12 % against 1 MiB: bench/RESULTS.md,
 * entries 30 and 38). But below the rate that fills a block within `--pcap-timeout` the kernel hands blocks over
 * part-filled, one per timeout, so the ring rides out a stalled worker for blocks × timeout, not
 * for its size: 64 blocks keep that at 6.4 s with the defaults, as 1 MiB blocks always did.
 */
const MID_BLOCK = 1 << 20;
const MAX_BLOCK = 4 << 20;
const MIN_BLOCKS = 8;
const STALL_BLOCKS = 64;
/**
 * next() keeps the block loaded from memory this far ahead of the packet it hands out, in steps of
 * {@link WARM_STEP} bytes (see PacketRing.#warm).
 */
const WARM_AHEAD = 32 * 1024;
const WARM_STEP = 16 * 1024;
/** Bytes of a cache line: #warm loads one word of each. */
const CACHE_LINE = 64;
/** Interface drop counters are read from sysfs at most this often (ms). */
const IFDROP_INTERVAL_MS = 1000;

/** Block size and count of a ring. */
export interface RingLayout {
  blockSize: number;
  blocks: number;
}

/**
 * The ring for `bufferSize` bytes and `snaplen`: blocks a power of two that hold a packet of the
 * snapshot length with its headers (so the kernel never clamps one below it), grown up to 1 MiB
 * while at least 8 blocks remain and up to 4 MiB while at least 64 do (see MAX_BLOCK), except in
 * immediate mode, where every block is handed over after a millisecond however little it holds and
 * many small blocks hold more packets; as many blocks as cover `bufferSize`, and at least 2 (the
 * kernel fills one while the worker reads another).
 */
export function ringLayout(bufferSize: number, snaplen: number, immediate = false): RingLayout {
  let blockSize = PAGE;
  while (blockSize < snaplen + FRAME_OVERHEAD) blockSize *= 2;
  const blocksToKeep = (size: number) => size > MID_BLOCK ? STALL_BLOCKS : MIN_BLOCKS;
  while (
    !immediate && blockSize < MAX_BLOCK &&
    bufferSize / (blockSize * 2) >= blocksToKeep(blockSize * 2)
  ) blockSize *= 2;
  return { blockSize, blocks: Math.max(2, Math.ceil(bufferSize / blockSize)) };
}

/** Options of {@link PacketRing.open}: libpcap's live options, and the filter. */
export interface RingOptions extends LiveOptions {
  /** BPF filter expression (libpcap syntax), run in the kernel. */
  filter?: string;
}

/**
 * A live capture through a TPACKET_V3 ring. Same fields and return codes as `PcapHandle` for the
 * worker's loop: after `next()` returns 1 the public fields describe the packet until the next
 * call, and its bytes are `data[offset .. offset + caplen)` inside the ring.
 */
export class PacketRing {
  /** The whole ring and the scratch space after it; packets lie wherever the kernel put them. */
  data: Uint8Array = new Uint8Array(0);
  /** Where the current packet starts in `data`. */
  offset = 0;
  /** Bytes of the current packet present in `data`. */
  caplen = 0;
  /** Length of the current packet on the wire (with its VLAN tag). */
  wireLen = 0;
  /** Seconds of the current packet's timestamp. */
  tsSec = 0;
  /** Microseconds, or nanoseconds with `nanosecond`. */
  tsFrac = 0;
  /** True when `tsFrac` counts nanoseconds. */
  readonly nanosecond: boolean;
  /** The interface. */
  readonly source: string;
  /** Nothing to warn about: present for the worker, which logs libpcap's activation warnings. */
  readonly warning = "";

  #fd: number;
  readonly #snaplen: number;
  readonly #timeoutMs: number;
  readonly #blockSize: number;
  /** Blocks in the ring: the layout's, or fewer when the kernel was short of memory. */
  #blocks: number;
  readonly #promisc: boolean;
  /** Capturing on the loopback device: skip the outgoing copy of every packet. */
  readonly #skipOutgoing: boolean;
  #map: Deno.PointerObject | null;
  /** Where {@link PacketRing.settle} puts a packet: just past the ring, in our own memory. */
  #scratch = 0;
  #u32 = new Uint32Array(0);
  #u16 = new Uint16Array(0);
  #i32 = new Int32Array(0);
  /** The block being read (or waited for). */
  #block = 0;
  /** True while the current block is ours (TP_STATUS_USER) and not yet handed back. */
  #held = false;
  /** Packets of the held block not handed out yet, and where the next one starts. */
  #left = 0;
  #packet = 0;
  #blockEnd = 0;
  /** The held block is loaded up to here (ring offset), and filled up to #filledEnd. */
  #warmTo = 0;
  #filledEnd = 0;
  /** What #warm's loads add up to: kept so that the loads are not optimised away. */
  #warmSum = 0;
  /** An ENETDOWN was seen and the interface has not been seen up (or packets) since. */
  #netdown = false;
  #error = "";
  #recv = 0;
  #drop = 0;
  #ifdrop = 0;
  #sysfsDrops = -1;
  #sysfsReadAt = 0;
  readonly #statsBuf = new Uint32Array(3);
  readonly #statsBytes = new Uint8Array(this.#statsBuf.buffer);

  private constructor(fd: number, device: string, opts: RingOptions, layout: RingLayout) {
    this.#fd = fd;
    this.source = device;
    this.nanosecond = opts.nanosecond ?? false;
    this.#snaplen = opts.snaplen ?? MAX_CAPLEN;
    this.#timeoutMs = opts.timeoutMs ?? 100;
    this.#blockSize = layout.blockSize;
    this.#blocks = layout.blocks;
    this.#promisc = opts.promisc ?? true;
    this.#skipOutgoing = device === "lo";
    this.#map = null;
  }

  /**
   * Opens `device` (Ethernet or loopback): socket, BPF filter, ring, mapping, bind, promiscuous
   * mode. Errors read like libpcap's for the same causes.
   */
  static open(device: string, opts: RingOptions = {}): PacketRing {
    const timeoutMs = opts.timeoutMs ?? 100;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new Error(`Invalid capture timeout ${timeoutMs} ms: expected an integer of 1 or more`);
    }
    const ifindex = device.length <= MAX_IFNAME ? interfaceIndex(device) : 0;
    if (ifindex === 0) {
      throw new Error(`Interface ${device} not found (cutcap interfaces lists them)`);
    }
    let fd: number;
    try {
      fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    } catch (err) {
      throw openError(device, err);
    }
    const layout = ringLayout(
      opts.bufferSize ?? 64 * 1024 * 1024,
      opts.snaplen ?? MAX_CAPLEN,
      opts.immediate === true,
    );
    const ring = new PacketRing(fd, device, opts, layout);
    try {
      ring.#setUp(ifindex, opts);
    } catch (err) {
      ring.close();
      throw openError(device, err);
    }
    return ring;
  }

  #setUp(ifindex: number, opts: RingOptions): void {
    const fd = this.#fd;
    const device = this.source;
    const hatype = hardwareType(fd, device);
    if (hatype !== ARPHRD_ETHER && hatype !== ARPHRD_LOOPBACK) {
      throw new Error(
        `Cannot capture on ${device} with --capture-method afpacket: hardware type ${hatype} ` +
          "is not Ethernet; use --capture-method libpcap",
      );
    }
    setsockopt(fd, { level: SOL_PACKET, name: PACKET_VERSION, value: TPACKET_V3 });
    // Room in front of every packet for the VLAN tag put back (as libpcap reserves it).
    setsockopt(fd, { level: SOL_PACKET, name: PACKET_RESERVE, value: VLAN_TAG_LEN });
    // The time a packet reached the stack, the same for every capture socket on the host (tcpdump's
    // too): without it each socket reads the clock when it copies the packet, a few hundred ns
    // apart. libpcap does this for nanosecond captures.
    setsockopt(fd, { level: SOL_SOCKET, name: SO_TIMESTAMPNS, value: 1 });
    // Before bind: no packet reaches the ring unfiltered.
    if (opts.filter !== undefined && opts.filter !== "") this.#attachFilter(opts.filter, opts);
    this.#createRing(opts.immediate === true ? 1 : this.#timeoutMs);
    const size = this.#blockSize * this.#blocks;
    this.#map = mapShared(fd, size, this.#scratchSize());
    this.#scratch = size;
    const buffer = Deno.UnsafePointerView.getArrayBuffer(this.#map, size + this.#scratchSize());
    this.data = new Uint8Array(buffer);
    this.#u32 = new Uint32Array(buffer);
    this.#u16 = new Uint16Array(buffer);
    this.#i32 = new Int32Array(buffer);
    bind(fd, sockaddrLl(ifindex));
    // A down interface binds without error and leaves ENETDOWN pending on the socket (libpcap's
    // check, word for word the same message).
    const pending = this.#socketError();
    if (pending !== 0) throw new LibcError(`bind(fd ${fd}): ${strerror(pending)}`, pending);
    if (this.#promisc) {
      // struct packet_mreq { int mr_ifindex; u16 mr_type; u16 mr_alen; u8 mr_address[8]; }
      const mreq = new Uint8Array(16);
      const view = new DataView(mreq.buffer);
      view.setInt32(0, ifindex, true);
      view.setUint16(4, PACKET_MR_PROMISC, true);
      setsockopt(fd, { level: SOL_PACKET, name: PACKET_ADD_MEMBERSHIP, value: mreq });
      this.#sysfsDrops = interfaceDrops(device);
    }
  }

  /**
   * Compiles the filter as libpcap compiles it for a live capture of this interface, on a
   * briefly opened libpcap handle: on Linux libpcap tests VLAN tags (`vlan`, `vlan 100`) through
   * the kernel's BPF extensions, since the kernel strips the tag before packet sockets see the
   * frame, and it does so only for a live handle. A program from a dead handle (pcap_open_dead)
   * would look for the tag in the frame and miss every tagged packet.
   */
  #attachFilter(expr: string, opts: RingOptions): void {
    const compiler = PcapHandle.openLive(this.source, {
      snaplen: this.#snaplen,
      promisc: false,
      bufferSize: 1, // the smallest ring libpcap makes: this handle never reads a packet
      timeoutMs: this.#timeoutMs,
      nanosecond: opts.nanosecond,
    });
    let insns: Uint8Array<ArrayBuffer>;
    try {
      insns = compiler.compileFilter(expr);
    } finally {
      compiler.close();
    }
    // struct sock_fprog { u16 len; (6 bytes padding) struct sock_filter *filter; }
    const fprog = new Uint8Array(16);
    const view = new DataView(fprog.buffer);
    view.setUint16(0, insns.byteLength / 8, true);
    view.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(insns))), true);
    try {
      setsockopt(this.#fd, { level: SOL_SOCKET, name: SO_ATTACH_FILTER, value: fprog });
    } catch (err) {
      throw new Error(`Cannot install BPF filter "${expr}": ${errorText(err)}`);
    }
  }

  /** PACKET_RX_RING; on ENOMEM, 5 % fewer blocks per try (as libpcap does). */
  #createRing(retireMs: number): void {
    let blocks = this.#blocks;
    for (;;) {
      // struct tpacket_req3 { block_size, block_nr, frame_size, frame_nr, retire_blk_tov,
      // sizeof_priv, feature_req_word } (u32 each); one "frame" per block.
      const req = new Uint32Array([
        this.#blockSize,
        blocks,
        this.#blockSize,
        blocks,
        retireMs,
        0,
        0,
      ]);
      try {
        setsockopt(this.#fd, {
          level: SOL_PACKET,
          name: PACKET_RX_RING,
          value: new Uint8Array(req.buffer),
        });
        this.#blocks = blocks;
        return;
      } catch (err) {
        if (!(err instanceof LibcError) || err.errno !== ENOMEM || blocks <= 2) throw err;
        blocks -= Math.max(1, Math.floor(blocks / 20));
      }
    }
  }

  /**
   * The next packet: 1 packet (fields updated), 0 none within the timeout, -1 error
   * ({@link PacketRing.lastError}). No system call while the ring holds packets.
   */
  next(): number {
    for (;;) {
      if (this.#left > 0) {
        this.#left--;
        const p = this.#packet;
        const w = p >>> 2;
        const u32 = this.#u32;
        this.#packet = p + u32[w];
        if (p + WARM_AHEAD > this.#warmTo) this.#warm();
        let at = p + this.#u16[(p >>> 1) + 12];
        let caplen = u32[w + 3];
        if (at + caplen > this.#blockEnd) return this.#corrupt(p, at, caplen);
        if (this.#skipOutgoing && this.data[p + 58] === PACKET_OUTGOING) continue;
        let wireLen = u32[w + 4];
        const status = u32[w + 5];
        const tci = u32[w + 8];
        if ((tci !== 0 || (status & TP_STATUS_VLAN_VALID) !== 0) && caplen >= VLAN_OFFSET) {
          const tpid = this.#u16[(p >>> 1) + 18];
          at = this.#insertTag(
            at,
            tci,
            tpid !== 0 || (status & TP_STATUS_VLAN_TPID_VALID) !== 0 ? tpid : ETH_P_8021Q,
          );
          caplen += VLAN_TAG_LEN;
          wireLen += VLAN_TAG_LEN;
        }
        this.offset = at;
        this.caplen = caplen > this.#snaplen ? this.#snaplen : caplen;
        this.wireLen = wireLen;
        this.tsSec = u32[w + 1];
        this.tsFrac = this.nanosecond ? u32[w + 2] : Math.floor(u32[w + 2] / 1000);
        return 1;
      }
      if (this.#held) this.#release();
      if (!this.#acquire()) {
        if (this.#map === null) return -1;
        const waited = this.#wait();
        if (waited !== 1) return waited;
        if (!this.#acquire()) return 0;
      }
    }
  }

  /** Takes the current block when the kernel has handed it over. */
  #acquire(): boolean {
    const base = this.#block * this.#blockSize;
    if ((Atomics.load(this.#i32, (base + 8) >>> 2) & TP_STATUS_USER) === 0) return false;
    this.#held = true;
    this.#netdown = false; // packets arrived: the interface is there and up
    this.#left = this.#u32[(base + 12) >>> 2];
    this.#packet = base + this.#u32[(base + 16) >>> 2];
    this.#blockEnd = base + this.#blockSize;
    this.#warmTo = this.#packet;
    // blk_len (@20): the bytes the kernel filled, from the block's start.
    this.#filledEnd = Math.min(base + this.#u32[(base + 20) >>> 2], this.#blockEnd);
    return true;
  }

  /**
   * Loads the next {@link WARM_STEP} filled bytes of the held block, one word per cache line. The
   * kernel wrote them on another CPU, so each line is a cache miss whoever reads it first; loaded
   * here in a tight loop of independent loads, the misses overlap each other, instead of coming
   * one at a time inside the pipeline's per-packet work (which waits for each). Measured: 5 % less
   * CPU per packet alone, 15-17 % with 4 MiB blocks (bench/RESULTS.md, entry 30).
   */
  #warm(): void {
    const u32 = this.#u32;
    const from = this.#warmTo;
    const to = Math.min(from + WARM_STEP, this.#filledEnd);
    let sum = this.#warmSum;
    for (let at = from; at < to; at += CACHE_LINE) sum ^= u32[at >>> 2];
    this.#warmSum = sum;
    // At the filled end: nothing more to load in this block.
    this.#warmTo = to > from ? to : this.#blockEnd + WARM_AHEAD;
  }

  /** Hands the current block back to the kernel and moves to the next. */
  #release(): void {
    Atomics.store(this.#i32, (this.#block * this.#blockSize + 8) >>> 2, TP_STATUS_KERNEL);
    this.#held = false;
    this.#left = 0;
    this.#block = this.#block + 1 === this.#blocks ? 0 : this.#block + 1;
  }

  /** Moves the MAC addresses 4 bytes forward and writes the tag behind them; the new start. */
  #insertTag(at: number, tci: number, tpid: number): number {
    const b = this.data;
    const start = at - VLAN_TAG_LEN;
    b.copyWithin(start, at, at + VLAN_OFFSET);
    const tag = start + VLAN_OFFSET;
    b[tag] = tpid >>> 8;
    b[tag + 1] = tpid & 0xff;
    b[tag + 2] = (tci >>> 8) & 0xff;
    b[tag + 3] = tci & 0xff;
    return start;
  }

  /**
   * Waits in poll(2) for the current block: 1 to look again, 0 nothing yet, -1 the socket failed
   * or the interface disappeared. What libpcap's pcap_wait_for_frames_mmap does.
   */
  #wait(): number {
    const revents = pollEvents(this.#fd, this.#netdown ? 1 : this.#timeoutMs);
    if ((revents & POLLNVAL) !== 0) return this.#fail("Invalid polling request on packet socket");
    if ((revents & (POLLHUP | POLLRDHUP)) !== 0) return this.#fail("Hangup on packet socket");
    if ((revents & POLLERR) !== 0) {
      const err = this.#socketError();
      if (err !== ENETDOWN) {
        return this.#fail(`Error condition on packet socket: ${strerror(err)} (errno ${err})`);
      }
      this.#netdown = true;
    }
    if (this.#netdown) {
      const state = this.#interfaceState();
      if (state === "gone") return this.#fail("The interface disappeared");
      if (state === "up") this.#netdown = false;
    }
    return 1;
  }

  #socketError(): number {
    const value = new Int32Array(1);
    try {
      getsockopt(this.#fd, {
        level: SOL_SOCKET,
        name: SO_ERROR,
        value: new Uint8Array(value.buffer),
      });
    } catch (err) {
      return err instanceof LibcError ? err.errno : -1;
    }
    return value[0];
  }

  /** Whether the bound interface still exists (the socket's ifindex is not -1) and is up. */
  #interfaceState(): "gone" | "down" | "up" {
    const address = new Uint8Array(20);
    getsockname(this.#fd, address);
    if (new DataView(address.buffer).getInt32(4, true) === -1) return "gone";
    const ifreq = ifreqFor(this.source);
    try {
      ioctl(this.#fd, SIOCGIFFLAGS, ifreq);
    } catch (err) {
      if (err instanceof LibcError && (err.errno === ENODEV || err.errno === ENXIO)) return "gone";
      throw err;
    }
    return (new DataView(ifreq.buffer).getUint16(16, true) & IFF_UP) !== 0 ? "up" : "down";
  }

  #corrupt(p: number, at: number, caplen: number): number {
    return this.#fail(
      `Corrupted frame on kernel ring: packet at ${p}, data at ${at} + caplen ${caplen} past ` +
        `the block end ${this.#blockEnd}`,
    );
  }

  #fail(message: string): number {
    this.#error = message;
    return -1;
  }

  /**
   * Moves the current packet into the scratch space after the ring (one memmove, no allocation),
   * where a writer that keeps one view per packet length finds every stored packet: otherwise it
   * would make a view per packet, each at another place in the ring.
   */
  settle(): void {
    const at = this.offset;
    if (at === this.#scratch) return;
    this.data.copyWithin(this.#scratch, at, at + this.caplen);
    this.offset = this.#scratch;
  }

  /** Bytes after the ring for {@link PacketRing.settle}: the longest packet, in whole pages. */
  #scratchSize(): number {
    return Math.ceil((this.#snaplen + VLAN_TAG_LEN) / PAGE) * PAGE;
  }

  /** The link-layer header type: Ethernet (the only kind this method opens). */
  linkType(): number {
    return LINKTYPE_ETHERNET;
  }

  /** The snapshot length in effect. */
  snaplen(): number {
    return this.#snaplen;
  }

  /** The socket, for joining a PACKET_FANOUT group. */
  selectableFd(): number {
    return this.#fd;
  }

  /** The ring's block size and count, as created. */
  layout(): RingLayout {
    return { blockSize: this.#blockSize, blocks: this.#blocks };
  }

  /** Why `next()` returned -1. */
  lastError(): string {
    if (this.#fd < 0) return `Capture socket on ${this.source} is closed`;
    return this.#error;
  }

  /**
   * Counters since the ring was opened: received (passed the filter, including dropped),
   * dropped for want of ring space, dropped by the interface (promiscuous captures only).
   */
  stats(): PcapStats {
    if (this.#fd < 0) throw new Error(`Capture socket on ${this.source} is closed`);
    getsockopt(this.#fd, { level: SOL_PACKET, name: PACKET_STATISTICS, value: this.#statsBytes });
    this.#recv += this.#statsBuf[0];
    this.#drop += this.#statsBuf[1];
    this.#readInterfaceDrops();
    return { recv: this.#recv, drop: this.#drop, ifdrop: this.#ifdrop };
  }

  #readInterfaceDrops(): void {
    if (this.#sysfsDrops < 0) return;
    const now = Date.now();
    if (now - this.#sysfsReadAt < IFDROP_INTERVAL_MS) return;
    this.#sysfsReadAt = now;
    const drops = interfaceDrops(this.source);
    if (drops < 0) return; // the interface is gone: keep the count
    this.#ifdrop += Math.max(0, drops - this.#sysfsDrops);
    this.#sysfsDrops = drops;
  }

  /** Unmaps the ring and closes the socket; further calls other than close() fail. */
  close(): void {
    if (this.#map !== null) {
      unmap(this.#map, this.#blockSize * this.#blocks + this.#scratchSize());
    }
    this.#map = null;
    this.data = new Uint8Array(0);
    this.#u32 = new Uint32Array(0);
    this.#u16 = new Uint16Array(0);
    this.#i32 = new Int32Array(0);
    this.#left = 0;
    this.#held = false;
    if (this.#fd >= 0) closeFd(this.#fd);
    this.#fd = -1;
  }
}

/** struct sockaddr_ll bound to every protocol (ETH_P_ALL) on `ifindex`. */
function sockaddrLl(ifindex: number): Uint8Array<ArrayBuffer> {
  const address = new Uint8Array(20);
  const view = new DataView(address.buffer);
  view.setUint16(0, AF_PACKET, true);
  view.setUint16(2, ETH_P_ALL, false); // network byte order
  view.setInt32(4, ifindex, true);
  return address;
}

/** struct ifreq (40 bytes) naming `device`. */
function ifreqFor(device: string): Uint8Array<ArrayBuffer> {
  const ifreq = new Uint8Array(40);
  ifreq.set(new TextEncoder().encode(device).subarray(0, MAX_IFNAME));
  return ifreq;
}

/** The ARPHRD_ hardware type of `device` (SIOCGIFHWADDR). */
function hardwareType(fd: number, device: string): number {
  const ifreq = ifreqFor(device);
  ioctl(fd, SIOCGIFHWADDR, ifreq);
  return new DataView(ifreq.buffer).getUint16(16, true);
}

/** rx_missed_errors + rx_fifo_errors of `device` (what libpcap counts as ifdrop), -1 if unreadable. */
function interfaceDrops(device: string): number {
  try {
    let sum = 0;
    for (const name of ["rx_missed_errors", "rx_fifo_errors"]) {
      sum += Number(Deno.readTextFileSync(`/sys/class/net/${device}/statistics/${name}`).trim());
    }
    return Number.isFinite(sum) ? sum : -1;
  } catch {
    return -1;
  }
}

/** An opening failure in libpcap's words for the same cause. */
function openError(device: string, err: unknown): Error {
  if (err instanceof LibcError) {
    switch (err.errno) {
      case EPERM:
      case EACCES:
        return new Error(`Capturing on ${device} needs root or CAP_NET_RAW and CAP_NET_ADMIN`);
      case ENETDOWN:
        return new Error(
          `Interface ${device} is down: bring it up first (ip link set ${device} up)`,
        );
      case ENODEV:
      case ENXIO:
        return new Error(`Interface ${device} not found (cutcap interfaces lists them)`);
    }
    return new Error(`Cannot capture on ${device}: ${err.message}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
