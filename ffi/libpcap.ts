/**
 * libpcap through Deno FFI: loading the library, live and offline handles, BPF filters, statistics,
 * interface listing, and an allocation-free `next()` for the per-packet loop.
 *
 * How `next()` avoids creating objects: pcap_next_ex writes two pointers (to a `pcap_pkthdr` and to
 * the packet bytes) into a 16-byte out-buffer we own. We read them as plain numbers (lo + hi * 2^32)
 * and look at the memory through long-lived ArrayBuffers made once with
 * `Deno.UnsafePointerView.getArrayBuffer` over a large region starting at the first pointer seen.
 * libpcap keeps returning pointers into the same place (its read buffer for files, its mmap ring for
 * live captures; the header is a struct inside the pcap_t), so nearly every packet is just an offset
 * into the existing view. Only when a pointer leaves the cached region (ring wrap below the first
 * address seen, a reallocated buffer) is a new view made. Making a view over memory that is not
 * mapped is harmless: nothing reads beyond `caplen`.
 *
 * Live handles run in non-blocking mode and wait with our own poll(2) on the capture socket:
 * on Linux since libpcap 1.10, a blocking pcap_next_ex never returns while no packet arrives
 * (the TPACKET_V3 timer only fires for a non-empty block), so a worker could not notice that it
 * should stop. The poll happens only when the ring is empty, never per packet.
 *
 * @module
 */

import { libcOrNull, setCloseOnExec, waitReadable } from "./libc.ts";
import { DirectReader } from "../src/pcap/reader.ts";
import { MAX_CAPLEN } from "../src/pcap/format.ts";

const SYMBOLS = {
  pcap_create: { parameters: ["buffer", "buffer"], result: "pointer" },
  pcap_set_snaplen: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_promisc: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_buffer_size: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_timeout: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_immediate_mode: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_set_tstamp_precision: { parameters: ["pointer", "i32"], result: "i32" },
  pcap_activate: { parameters: ["pointer"], result: "i32" },
  pcap_open_offline_with_tstamp_precision: {
    parameters: ["buffer", "u32", "buffer"],
    result: "pointer",
  },
  pcap_fopen_offline_with_tstamp_precision: {
    parameters: ["pointer", "u32", "buffer"],
    result: "pointer",
  },
  pcap_open_dead: { parameters: ["i32", "i32"], result: "pointer" },
  pcap_compile: { parameters: ["pointer", "buffer", "buffer", "i32", "u32"], result: "i32" },
  pcap_setfilter: { parameters: ["pointer", "buffer"], result: "i32" },
  pcap_freecode: { parameters: ["buffer"], result: "void" },
  pcap_next_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  pcap_stats: { parameters: ["pointer", "buffer"], result: "i32" },
  pcap_datalink: { parameters: ["pointer"], result: "i32" },
  pcap_snapshot: { parameters: ["pointer"], result: "i32" },
  pcap_get_selectable_fd: { parameters: ["pointer"], result: "i32" },
  pcap_geterr: { parameters: ["pointer"], result: "pointer" },
  pcap_statustostr: { parameters: ["i32"], result: "pointer" },
  pcap_close: { parameters: ["pointer"], result: "void" },
  pcap_findalldevs: { parameters: ["buffer", "buffer"], result: "i32" },
  pcap_freealldevs: { parameters: ["pointer"], result: "void" },
  pcap_lib_version: { parameters: [], result: "pointer" },
  pcap_breakloop: { parameters: ["pointer"], result: "void" },
  pcap_setnonblock: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
} as const;

/** The loaded libpcap symbols. */
export type Libpcap = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Sonames tried, in order, when neither a path nor CUTCAP_LIBPCAP is given. */
export const LIBPCAP_NAMES: readonly string[] = ["libpcap.so.1", "libpcap.so.0.8", "libpcap.so"];

const INSTALL_HINT = "install it with `apt-get install -y libpcap0.8`";
const ERRBUF_SIZE = 256;
const NETMASK_UNKNOWN = 0xffffffff;
const TSTAMP_PRECISION_MICRO = 0;
const TSTAMP_PRECISION_NANO = 1;
/** pcap_activate codes (pcap/pcap.h). */
const ERROR_NO_SUCH_DEVICE = -5;
const ERROR_PERM_DENIED = -8;
const ERROR_IFACE_NOT_UP = -9;
const ERROR_PROMISC_PERM_DENIED = -11;
const ERROR_TSTAMP_PRECISION_NOTSUP = -12;
const WARNING_PROMISC_NOTSUP = 2;
/** pcap_if flags. */
const IF_LOOPBACK = 1;
const IF_UP = 2;
const IF_RUNNING = 4;
/** Size of the cached views over packet memory and over the pcap_pkthdr. */
const DATA_SPAN = 64 * 1024 * 1024;
const HDR_SPAN = 4096;
const TWO_32 = 4294967296;
/**
 * stdio buffer of an offline handle. libpcap reads a file with two fread() calls per packet
 * through a FILE whose default buffer is 4 KiB, i.e. one read(2) per 4 KiB; a 1 MiB buffer makes
 * that one per MiB (measured: a third less CPU time for reading a 1.6 GB capture).
 */
const OFFLINE_BUFFER = 1 << 20;
const IOFBF = 0;

let loaded: { path: string; symbols: Libpcap } | undefined;

/**
 * Loads libpcap once per process (per worker) and returns its symbols. The library is taken from
 * `path` (the --libpcap option), else from the CUTCAP_LIBPCAP environment variable, else from the
 * first of {@link LIBPCAP_NAMES} that loads. Later calls return the loaded library.
 */
export function loadLibpcap(path?: string): Libpcap {
  if (loaded !== undefined) {
    if (path !== undefined && path !== loaded.path) {
      throw new Error(`Cannot load libpcap from ${path}: ${loaded.path} is already loaded`);
    }
    return loaded.symbols;
  }
  const explicit = path ?? envLibpcap();
  if (explicit !== undefined) {
    try {
      loaded = { path: explicit, symbols: Deno.dlopen(explicit, SYMBOLS).symbols };
    } catch (err) {
      throw new Error(`Cannot load libpcap from ${explicit}: ${oneLine(err)}; ${INSTALL_HINT}`);
    }
    return loaded.symbols;
  }
  let lastError = "";
  for (const name of LIBPCAP_NAMES) {
    try {
      loaded = { path: name, symbols: Deno.dlopen(name, SYMBOLS).symbols };
      return loaded.symbols;
    } catch (err) {
      lastError = oneLine(err);
    }
  }
  throw new Error(
    `Cannot load libpcap (tried ${LIBPCAP_NAMES.join(", ")}; last error: ${lastError}): ` +
      `${INSTALL_HINT}, or pass --libpcap PATH or set CUTCAP_LIBPCAP`,
  );
}

function envLibpcap(): string | undefined {
  try {
    const value = Deno.env.get("CUTCAP_LIBPCAP");
    return value === "" ? undefined : value;
  } catch {
    // Without --allow-env the variable simply is not consulted.
    return undefined;
  }
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s+/g, " ").trim();
}

const encoder = new TextEncoder();

function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

function readCString(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

function pointerString(ptr: Deno.PointerValue): string {
  return ptr === null ? "" : Deno.UnsafePointerView.getCString(ptr);
}

/** Options for {@link PcapHandle.openLive}. */
export interface LiveOptions {
  /** Bytes kept per packet (default MAX_CAPLEN, 262144). */
  snaplen?: number;
  /** Promiscuous mode (default true). */
  promisc?: boolean;
  /** Kernel ring size in bytes (default 64 MiB). */
  bufferSize?: number;
  /**
   * Read timeout in ms, 1 or more: `next()` returns 0 when nothing arrived within it, and the
   * kernel hands over a partly filled ring block after it (default 100).
   */
  timeoutMs?: number;
  /** Deliver every packet at once instead of when a ring block fills (default false). */
  immediate?: boolean;
  /** Nanosecond timestamps in `tsFrac` instead of microseconds (default false). */
  nanosecond?: boolean;
}

/** Options for {@link PcapHandle.openOffline}. */
export interface OfflineOptions {
  /** Nanosecond timestamps in `tsFrac` instead of microseconds (default false). */
  nanosecond?: boolean;
  /**
   * Read the records of a plain little-endian pcap file (version 2.4, timestamps already in the
   * precision asked for) in JavaScript from large reads, instead of one pcap_next_ex FFI call
   * per packet; libpcap takes over, from that record on, at the first record it would treat
   * specially (longer than the snapshot length or 262144 bytes, cut off by the end of the file)
   * and when a filter is set, so the packets and errors are libpcap's. pcapng, swapped and
   * other files are read by libpcap throughout. While the direct reader is active,
   * {@link PcapHandle.breakLoopAt} from another thread is not seen (breakLoop() is). Default
   * false.
   */
  direct?: boolean;
}

/** Counters from pcap_stats (32-bit, they wrap). */
export interface PcapStats {
  /** Packets received by the capture (after the filter). */
  recv: number;
  /** Packets dropped because the buffer was full. */
  drop: number;
  /** Packets dropped by the interface or its driver. */
  ifdrop: number;
}

/** One capture device as listed by pcap_findalldevs. */
export interface PcapDevice {
  name: string;
  description: string;
  /** IPv4 and IPv6 addresses of the device, as text. */
  addresses: string[];
  up: boolean;
  running: boolean;
  loopback: boolean;
}

/**
 * An open libpcap capture (live or from a file). Call {@link PcapHandle.next} in a loop; after it
 * returns 1 the public fields describe the packet until the next call.
 */
export class PcapHandle {
  /**
   * Memory holding the current packet; its bytes are `data[offset .. offset + caplen)`. The view
   * may change between packets (re-read it after every `next()`), and the bytes are only valid
   * until the next call: libpcap hands ring blocks back to the kernel as it moves on.
   */
  data: Uint8Array = new Uint8Array(0);
  /** Where the current packet starts in `data`. */
  offset = 0;
  /** Bytes of the current packet present in `data`. */
  caplen = 0;
  /** Length of the current packet on the wire. */
  wireLen = 0;
  /** Seconds of the current packet's timestamp. */
  tsSec = 0;
  /** Fraction of the timestamp: microseconds, or nanoseconds when opened with `nanosecond`. */
  tsFrac = 0;
  /** True when `tsFrac` counts nanoseconds. */
  readonly nanosecond: boolean;
  /** The file path or device name this handle was opened on. */
  readonly source: string;
  /** A warning from pcap_activate (for example no promiscuous mode), "" when there was none. */
  readonly warning: string;

  #lib: Libpcap;
  #ptr: Deno.PointerValue;
  readonly #nextEx: Libpcap["pcap_next_ex"];
  /** pcap_next_ex out-params: bytes 0-7 the header pointer, bytes 8-15 the data pointer. */
  readonly #out = new Uint8Array(16);
  readonly #outWords = new Uint32Array(this.#out.buffer);
  readonly #outHdr = this.#out.subarray(0, 8);
  readonly #outData = this.#out.subarray(8, 16);
  #dataBase = -1;
  #hdrBase = -1;
  #hdrWords = new Uint32Array(0);
  /** Capture socket polled when the ring is empty; -1 for files. */
  #waitFd = -1;
  /** The stdio buffer of an offline handle's FILE; referenced until the handle is closed. */
  #stdioBuffer: Uint8Array | null = null;
  /** An offline handle's own FILE (for seeking when libpcap takes over from the direct reader). */
  #fp: Deno.PointerValue = null;
  /** The direct reader of an offline handle (see OfflineOptions.direct), null when inactive. */
  #direct: DirectReader | null = null;
  /** Set by breakLoop() while the direct reader is active. */
  #directBreak = false;
  /** Why handing over from the direct reader to libpcap failed, "" when it did not. */
  #directError = "";
  #timeoutMs = 0;

  private constructor(
    lib: Libpcap,
    ptr: Deno.PointerValue,
    info: { source: string; nanosecond: boolean; warning: string },
  ) {
    this.#lib = lib;
    this.#ptr = ptr;
    this.#nextEx = lib.pcap_next_ex;
    this.source = info.source;
    this.nanosecond = info.nanosecond;
    this.warning = info.warning;
  }

  /** Opens a live capture on `device` (create, set options, activate). */
  static openLive(device: string, opts: LiveOptions = {}): PcapHandle {
    const lib = loadLibpcap();
    const errbuf = new Uint8Array(ERRBUF_SIZE);
    const ptr = lib.pcap_create(cString(device), errbuf);
    if (ptr === null) {
      throw new Error(`Cannot capture on ${device}: ${readCString(errbuf)}`);
    }
    const nanosecond = opts.nanosecond ?? false;
    const timeoutMs = opts.timeoutMs ?? 100;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      lib.pcap_close(ptr);
      throw new Error(`Invalid capture timeout ${timeoutMs} ms: expected an integer of 1 or more`);
    }
    const setters: [string, number][] = [
      ["snaplen", lib.pcap_set_snaplen(ptr, opts.snaplen ?? MAX_CAPLEN)],
      ["promisc", lib.pcap_set_promisc(ptr, (opts.promisc ?? true) ? 1 : 0)],
      ["buffer size", lib.pcap_set_buffer_size(ptr, opts.bufferSize ?? 64 * 1024 * 1024)],
      ["timeout", lib.pcap_set_timeout(ptr, timeoutMs)],
      ["immediate mode", lib.pcap_set_immediate_mode(ptr, (opts.immediate ?? false) ? 1 : 0)],
      [
        "timestamp precision",
        lib.pcap_set_tstamp_precision(
          ptr,
          nanosecond ? TSTAMP_PRECISION_NANO : TSTAMP_PRECISION_MICRO,
        ),
      ],
    ];
    for (const [what, status] of setters) {
      if (status !== 0) {
        const text = pointerString(lib.pcap_statustostr(status));
        lib.pcap_close(ptr);
        throw new Error(`Cannot set ${what} on ${device}: ${text}`);
      }
    }
    const status = lib.pcap_activate(ptr);
    if (status < 0) {
      const message = activateError(lib, ptr, device, status);
      lib.pcap_close(ptr);
      throw new Error(message);
    }
    let warning = "";
    if (status > 0) {
      const detail = pointerString(lib.pcap_geterr(ptr));
      warning = status === WARNING_PROMISC_NOTSUP
        ? `${device} does not support promiscuous mode: capturing only its own traffic`
        : `Warning on ${device}: ${detail || pointerString(lib.pcap_statustostr(status))}`;
    }
    const fd = lib.pcap_get_selectable_fd(ptr);
    if (fd < 0 || lib.pcap_setnonblock(ptr, 1, errbuf) !== 0) {
      const detail = fd < 0 ? "no selectable file descriptor" : readCString(errbuf);
      lib.pcap_close(ptr);
      throw new Error(`Cannot capture on ${device}: non-blocking mode failed: ${detail}`);
    }
    try {
      setCloseOnExec(fd); // libpcap opens its socket without SOCK_CLOEXEC
    } catch (error) {
      lib.pcap_close(ptr);
      throw new Error(`Cannot capture on ${device}: ${(error as Error).message}`);
    }
    const handle = new PcapHandle(lib, ptr, { source: device, nanosecond, warning });
    handle.#waitFd = fd;
    handle.#timeoutMs = timeoutMs;
    return handle;
  }

  /** Opens a pcap or pcapng file. */
  static openOffline(path: string, opts: OfflineOptions = {}): PcapHandle {
    const lib = loadLibpcap();
    const errbuf = new Uint8Array(ERRBUF_SIZE);
    const nanosecond = opts.nanosecond ?? false;
    const precision = nanosecond ? TSTAMP_PRECISION_NANO : TSTAMP_PRECISION_MICRO;
    const buffered = openBuffered(lib, path, precision);
    if (buffered !== null) {
      const handle = new PcapHandle(lib, buffered.ptr, { source: path, nanosecond, warning: "" });
      handle.#stdioBuffer = buffered.buffer;
      handle.#fp = buffered.fp;
      if (opts.direct === true) {
        handle.#direct = DirectReader.open(
          path,
          nanosecond,
          lib.pcap_snapshot(buffered.ptr),
        );
      }
      return handle;
    }
    // Whatever the buffered path could not open ("-" for stdin, missing files, bad headers)
    // goes through pcap_open_offline, so its messages stay libpcap's own.
    const ptr = lib.pcap_open_offline_with_tstamp_precision(cString(path), precision, errbuf);
    if (ptr === null) {
      // libpcap's text often starts with the path itself: say it once.
      throw new Error(`${path}: ${readCString(errbuf).replace(`${path}: `, "")}`);
    }
    return new PcapHandle(lib, ptr, { source: path, nanosecond, warning: "" });
  }

  /**
   * Reads the next packet: 1 packet (fields updated), 0 nothing arrived within the timeout (live),
   * -1 error ({@link PcapHandle.lastError}), -2 end of file or {@link PcapHandle.breakLoop}.
   * Exactly one FFI call and no allocation while packets are waiting; a live handle with an empty
   * ring waits in poll(2) for up to the timeout, then tries once more.
   */
  next(): number {
    const ptr = this.#ptr;
    // pcap_next_ex(NULL) would crash the process; a closed handle reports an error instead.
    if (ptr === null) return -1;
    const direct = this.#direct;
    if (direct !== null) {
      if (this.#directBreak) {
        this.#directBreak = false;
        return -2;
      }
      if (direct.next(this)) return 1;
      if (direct.ended) return -2;
      if (!this.#handOver()) return -1;
    }
    let rc = this.#nextEx(ptr, this.#outHdr, this.#outData);
    if (rc !== 1) {
      if (rc !== 0 || this.#waitFd < 0) return rc;
      if (!waitReadable(this.#waitFd, this.#timeoutMs)) return 0;
      rc = this.#nextEx(ptr, this.#outHdr, this.#outData);
      if (rc !== 1) return rc;
    }
    const w = this.#outWords;
    const hdrPtr = w[0] + w[1] * TWO_32;
    let h = hdrPtr - this.#hdrBase;
    if (h < 0 || h > HDR_SPAN - 24) {
      this.#mapHeader(hdrPtr);
      h = 0;
    }
    h >>>= 2;
    const hw = this.#hdrWords;
    // The low word only: a pcap file holds unsigned 32-bit seconds (to 2106), which libpcap
    // sign-extends into tv_sec (negative from 2038 on); live timestamps fit it until 2106 too.
    this.tsSec = hw[h];
    this.tsFrac = hw[h + 2];
    const caplen = hw[h + 4];
    this.caplen = caplen;
    this.wireLen = hw[h + 5];
    const dataPtr = w[2] + w[3] * TWO_32;
    const d = dataPtr - this.#dataBase;
    if (d >= 0 && d + caplen <= DATA_SPAN) {
      this.offset = d;
    } else {
      this.#mapData(dataPtr, caplen);
    }
    return 1;
  }

  /**
   * Puts the current packet at offset 0 of `data`, like libpcap's offline reader always does.
   * The direct reader hands packets out where it read them; a writer that keeps a view per
   * packet length over a fixed offset (the store's does) needs them at one place, and only the
   * packets it stores need the move. A no-op when the packet is there already or comes from
   * libpcap (a live ring's packets stay where they are).
   */
  settle(): void {
    if (this.offset !== 0) this.#direct?.settle(this);
  }

  /**
   * Stops the direct reader and lets libpcap continue at the record it stopped before: our FILE
   * is positioned there (libpcap keeps no other state between records of a pcap file).
   */
  #handOver(): boolean {
    const direct = this.#direct;
    if (direct === null) return true;
    this.#direct = null;
    const at = direct.recordOffset;
    direct.close();
    // Packet memory is libpcap's again: map it afresh on the next packet.
    this.#dataBase = -1;
    const libc = libcOrNull();
    if (libc === null || libc.fseeko(this.#fp, BigInt(at), 0) !== 0) {
      this.#directError = `Cannot continue reading ${this.source} at byte ${at}: seek failed`;
      return false;
    }
    return true;
  }

  #mapHeader(address: number): void {
    const buf = Deno.UnsafePointerView.getArrayBuffer(toPointer(address), HDR_SPAN);
    this.#hdrBase = address;
    this.#hdrWords = new Uint32Array(buf);
  }

  #mapData(address: number, caplen: number): void {
    const span = Math.max(DATA_SPAN, caplen);
    this.data = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(toPointer(address), span));
    this.#dataBase = address;
    this.offset = 0;
  }

  /** libpcap's text for the last error (pcap_geterr). */
  lastError(): string {
    if (this.#ptr === null) return `Capture handle on ${this.source} is closed`;
    if (this.#directError !== "") return this.#directError;
    return pointerString(this.#lib.pcap_geterr(this.#ptr));
  }

  /** Installs a BPF filter (optimized, netmask unknown); libpcap's complaint is quoted verbatim. */
  setFilter(expr: string): void {
    const lib = this.#lib;
    const ptr = this.#live();
    // Filtering is libpcap's job: it reads the rest of the file.
    if (!this.#handOver()) throw new Error(this.#directError);
    const program = this.#compile(expr);
    const status = lib.pcap_setfilter(ptr, program);
    const text = status === 0 ? "" : this.lastError();
    lib.pcap_freecode(program);
    if (status !== 0) throw new Error(`Cannot install BPF filter "${expr}": ${text}`);
  }

  /**
   * The classic BPF program libpcap compiles from `expr` for this handle (optimized, netmask
   * unknown): the bytes of its `struct sock_filter` array, 8 per instruction, as SO_ATTACH_FILTER
   * takes them. libpcap's complaint is quoted verbatim.
   */
  compileFilter(expr: string): Uint8Array<ArrayBuffer> {
    const program = this.#compile(expr);
    const view = new DataView(program.buffer);
    const bytes = new Uint8Array(view.getUint32(0, true) * 8);
    const insns = Deno.UnsafePointer.create(view.getBigUint64(8, true));
    if (insns !== null) new Deno.UnsafePointerView(insns).copyInto(bytes);
    this.#lib.pcap_freecode(program);
    return bytes;
  }

  /** pcap_compile into a new struct bpf_program { u_int bf_len; bpf_insn *bf_insns; }. */
  #compile(expr: string): Uint8Array<ArrayBuffer> {
    const program = new Uint8Array(16);
    if (this.#lib.pcap_compile(this.#live(), program, cString(expr), 1, NETMASK_UNKNOWN) !== 0) {
      throw new Error(`Bad BPF filter "${expr}": ${this.lastError()}`);
    }
    return program;
  }

  /** The link-layer header type (LINKTYPE_/DLT_ value, 1 = Ethernet). */
  linkType(): number {
    return this.#lib.pcap_datalink(this.#live());
  }

  /** The snapshot length in effect. */
  snaplen(): number {
    return this.#lib.pcap_snapshot(this.#live());
  }

  /** The capture socket's file descriptor (-1 for files); used to join a PACKET_FANOUT group. */
  selectableFd(): number {
    return this.#lib.pcap_get_selectable_fd(this.#live());
  }

  /** Capture counters since the handle was activated (live captures only). */
  stats(): PcapStats {
    const buf = new Uint32Array(4);
    if (this.#lib.pcap_stats(this.#live(), buf) !== 0) {
      throw new Error(`Cannot read statistics of ${this.source}: ${this.lastError()}`);
    }
    return { recv: buf[0], drop: buf[1], ifdrop: buf[2] };
  }

  /** The pcap_t address, for {@link PcapHandle.breakLoopAt} from another thread. */
  address(): bigint {
    return Deno.UnsafePointer.value(this.#live());
  }

  /** Makes a blocked or the next `next()` return -2 (pcap_breakloop). */
  breakLoop(): void {
    const ptr = this.#live();
    if (this.#direct !== null) this.#directBreak = true;
    else this.#lib.pcap_breakloop(ptr);
  }

  /**
   * pcap_breakloop on a handle owned by another worker, known by its {@link PcapHandle.address}.
   * The handle must still be open.
   */
  static breakLoopAt(address: bigint): void {
    loadLibpcap().pcap_breakloop(Deno.UnsafePointer.create(address));
  }

  /** Closes the handle; further calls other than close() throw. */
  close(): void {
    if (this.#ptr === null) return;
    this.#lib.pcap_close(this.#ptr); // also fcloses an offline handle's FILE
    this.#ptr = null;
    this.#stdioBuffer = null;
    this.#fp = null;
    this.#direct?.close();
    this.#direct = null;
    this.#waitFd = -1;
    this.data = new Uint8Array(0);
    this.#dataBase = -1;
    this.#hdrBase = -1;
  }

  #live(): Deno.PointerObject {
    if (this.#ptr === null) throw new Error(`Capture handle on ${this.source} is closed`);
    return this.#ptr;
  }
}

/**
 * Opens a capture file through our own FILE with a large stdio buffer (pcap_fopen_offline);
 * null when that is not possible, and the caller falls back to pcap_open_offline.
 */
function openBuffered(
  lib: Libpcap,
  path: string,
  precision: number,
): { ptr: Deno.PointerObject; buffer: Uint8Array; fp: Deno.PointerObject } | null {
  const libc = path === "-" ? null : libcOrNull();
  if (libc === null) return null;
  const fp = libc.fopen(cString(path), cString("rb"));
  if (fp === null) return null;
  const buffer = new Uint8Array(OFFLINE_BUFFER);
  // The FILE keeps a pointer to `buffer`: the handle references it until pcap_close.
  if (libc.setvbuf(fp, buffer, IOFBF, BigInt(OFFLINE_BUFFER)) !== 0) {
    libc.fclose(fp);
    return null;
  }
  const ptr = lib.pcap_fopen_offline_with_tstamp_precision(
    fp,
    precision,
    new Uint8Array(ERRBUF_SIZE),
  );
  if (ptr === null) {
    libc.fclose(fp);
    return null;
  }
  return { ptr, buffer, fp };
}

function toPointer(address: number): Deno.PointerObject {
  const ptr = Deno.UnsafePointer.create(BigInt(address));
  if (ptr === null) throw new Error("Null pointer from pcap_next_ex: expected packet memory");
  return ptr;
}

function activateError(
  lib: Libpcap,
  ptr: Deno.PointerObject,
  device: string,
  status: number,
): string {
  switch (status) {
    case ERROR_NO_SUCH_DEVICE:
      return `Interface ${device} not found (cutcap interfaces lists them)`;
    case ERROR_PERM_DENIED:
    case ERROR_PROMISC_PERM_DENIED:
      return `Capturing on ${device} needs root or CAP_NET_RAW and CAP_NET_ADMIN`;
    case ERROR_IFACE_NOT_UP:
      return `Interface ${device} is down: bring it up first (ip link set ${device} up)`;
    case ERROR_TSTAMP_PRECISION_NOTSUP:
      return `Interface ${device} does not support nanosecond timestamps: capture without them`;
  }
  const statusText = pointerString(lib.pcap_statustostr(status));
  const detail = pointerString(lib.pcap_geterr(ptr));
  return `Cannot capture on ${device}: ${statusText}${detail === "" ? "" : ` (${detail})`}`;
}

/** Lists capture devices (pcap_findalldevs). */
export function findAllDevs(): PcapDevice[] {
  const lib = loadLibpcap();
  const errbuf = new Uint8Array(ERRBUF_SIZE);
  const head = new BigUint64Array(1);
  if (lib.pcap_findalldevs(head, errbuf) !== 0) {
    throw new Error(`Cannot list capture interfaces: ${readCString(errbuf)}`);
  }
  const first = Deno.UnsafePointer.create(head[0]);
  const devices: PcapDevice[] = [];
  // pcap_if on LP64: next @0, name @8, description @16, addresses @24, flags (u32) @32.
  for (let dev = first; dev !== null;) {
    const view = new Deno.UnsafePointerView(dev);
    const flags = view.getUint32(32);
    const addresses: string[] = [];
    // pcap_addr: next @0, addr @8 (netmask, broadaddr, dstaddr follow).
    for (let a = view.getPointer(24); a !== null;) {
      const av = new Deno.UnsafePointerView(a);
      const text = sockaddrText(av.getPointer(8));
      if (text !== "") addresses.push(text);
      a = av.getPointer(0);
    }
    devices.push({
      name: pointerString(view.getPointer(8)),
      description: pointerString(view.getPointer(16)),
      addresses,
      up: (flags & IF_UP) !== 0,
      running: (flags & IF_RUNNING) !== 0,
      loopback: (flags & IF_LOOPBACK) !== 0,
    });
    dev = view.getPointer(0);
  }
  if (first !== null) lib.pcap_freealldevs(first);
  return devices;
}

/** IPv4/IPv6 address text of a sockaddr, "" for other families (AF_PACKET, ...). */
function sockaddrText(sa: Deno.PointerValue): string {
  if (sa === null) return "";
  const view = new Deno.UnsafePointerView(sa);
  const family = view.getUint16(0);
  if (family === 2) {
    const b = new Uint8Array(4);
    view.copyInto(b, 4);
    return b.join(".");
  }
  if (family === 10) {
    const b = new Uint8Array(16);
    view.copyInto(b, 8);
    return ipv6Text(b);
  }
  return "";
}

function ipv6Text(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(b[i] << 8 | b[i + 1]);
  // Compress the longest run of two or more zero words (RFC 5952).
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLen).join(":")}`;
}

/**
 * The interface to capture on when none is given: the first device that is up, running, not
 * loopback and has an address; else the first device other than "any".
 */
export function defaultInterface(): string {
  const devices = findAllDevs();
  const good = devices.find((d) => d.up && d.running && !d.loopback && d.addresses.length > 0);
  if (good !== undefined) return good.name;
  const fallback = devices.find((d) => d.name !== "any");
  if (fallback !== undefined) return fallback.name;
  throw new Error("No capture interface found: expected at least one device from pcap_findalldevs");
}

/**
 * Compiles `expr` for link type `dlt` (a DLT_ value) without any capture handle, so a bad filter is
 * reported before anything starts; throws libpcap's message as setFilter does.
 */
export function checkFilter(expr: string, dlt: number, snaplen: number): void {
  const lib = loadLibpcap();
  const dead = lib.pcap_open_dead(dlt, snaplen);
  if (dead === null) return;
  try {
    const program = new Uint8Array(16);
    if (lib.pcap_compile(dead, program, cString(expr), 1, NETMASK_UNKNOWN) !== 0) {
      throw new Error(`Bad BPF filter "${expr}": ${pointerString(lib.pcap_geterr(dead))}`);
    }
    lib.pcap_freecode(program);
  } finally {
    lib.pcap_close(dead);
  }
}

/** libpcap's version string, e.g. "libpcap version 1.10.3 (with TPACKET_V3)". */
export function libpcapVersion(): string {
  return pointerString(loadLibpcap().pcap_lib_version());
}
