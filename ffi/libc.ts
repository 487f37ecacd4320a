/**
 * libc for all of cutcap, opened once per isolate (`libc()` / `libcOrNull()`): the other ffi/
 * modules (aio.ts, proc_self.ts, sd_notify.ts, libpcap.ts's stdio) take their symbols from here.
 * This module's own calls: the socket calls of an AF_PACKET capture (socket, setsockopt,
 * getsockopt, bind, mmap of its ring, poll, ioctl for interface flags), dropping root after the
 * capture handles are open, getuid, shutdown of stalled TLS sockets, the archive's free space
 * (statvfs) and early writeback of output files (sync_file_range, fdatasync). errno is read
 * through __errno_location right after the failing call.
 *
 * @module
 */

const SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getpwnam: { parameters: ["buffer"], result: "pointer" },
  getgrnam: { parameters: ["buffer"], result: "pointer" },
  setgroups: { parameters: ["usize", "buffer"], result: "i32" },
  setgid: { parameters: ["u32"], result: "i32" },
  setuid: { parameters: ["u32"], result: "i32" },
  getuid: { parameters: [], result: "u32" },
  getgid: { parameters: [], result: "u32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  capget: { parameters: ["buffer", "buffer"], result: "i32" },
  capset: { parameters: ["buffer", "buffer"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  /** Only as syscall(SYS_getdents64, fd, buffer, size) (proc_self.ts). */
  syscall: { parameters: ["i64", "i32", "buffer", "usize"], result: "i64" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  // fcntl(2) is variadic; its third argument here is always an int.
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
  // stdio, for libpcap's offline handles (libpcap.ts).
  fopen: { parameters: ["buffer", "buffer"], result: "pointer" },
  fclose: { parameters: ["pointer"], result: "i32" },
  setvbuf: { parameters: ["pointer", "buffer", "i32", "usize"], result: "i32" },
  fseeko: { parameters: ["pointer", "i64", "i32"], result: "i32" },
  // Optional: Linux-only, or (POSIX AIO) in librt before glibc 2.34. A libc without them still
  // loads; their users fall back (writes in-line, no writeback hints).
  sync_file_range: {
    parameters: ["i32", "i64", "i64", "u32"],
    result: "i32",
    optional: true,
  },
  fdatasync: { parameters: ["i32"], result: "i32", nonblocking: true, optional: true },
  aio_write: { parameters: ["buffer"], result: "i32", optional: true },
  aio_error: { parameters: ["buffer"], result: "i32", optional: true },
  aio_return: { parameters: ["buffer"], result: "isize", optional: true },
  aio_suspend: { parameters: ["buffer", "i32", "pointer"], result: "i32", optional: true },
} as const;

/** libc's symbols; the optional ones are null where this libc lacks them. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** The loaded symbols; null once loading failed; undefined before the first try. */
let loaded: Libc | null | undefined;
let loadError: unknown;

/**
 * libc's symbols, opened on first use (once per isolate: every worker is one). Throws Deno's error
 * when libc cannot be opened (no --allow-ffi, no libc.so.6).
 */
export function libc(): Libc {
  const lib = libcOrNull();
  if (lib === null) throw loadError;
  return lib;
}

/** libc's symbols, or null where libc cannot be opened: for callers to which it is an optimisation. */
export function libcOrNull(): Libc | null {
  if (loaded === undefined) {
    try {
      loaded = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
    } catch (err) {
      loadError = err;
      loaded = null;
    }
  }
  return loaded;
}

/** A failed libc call, with its errno. */
export class LibcError extends Error {
  /** The errno value, e.g. 22 for EINVAL. */
  readonly errno: number;
  constructor(message: string, errno: number) {
    super(message);
    this.name = "LibcError";
    this.errno = errno;
  }
}

/** The calling thread's errno (read right after the failing call). */
export function errno(lib: Libc = libc()): number {
  const ptr = lib.__errno_location();
  return ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32(0);
}

/** The text of an errno value, e.g. "Invalid argument". */
export function strerror(code: number): string {
  const ptr = libc().strerror(code);
  return ptr === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(ptr);
}

function fail(lib: Libc, what: string): never {
  throw libcError(lib, what);
}

/** The error of the libc call `what` that just failed (errno read now, before any cleanup call). */
function libcError(lib: Libc, what: string): LibcError {
  const code = errno(lib);
  return new LibcError(`${what} failed: ${strerror(code)} (errno ${code})`, code);
}

/** struct pollfd { int fd; short events; short revents; }, reused by every poll call. */
const pollFd = new Int32Array(2);
const pollRevents = new Uint16Array(pollFd.buffer, 6, 1);
/** poll(2) event bits. */
export const POLLIN = 1;
export const POLLERR = 8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const POLLRDHUP = 0x2000;

/**
 * Waits up to `timeoutMs` for `fd` to become readable (poll(2)); false on timeout or EINTR.
 * Blocks the calling thread: meant for capture workers.
 */
export function waitReadable(fd: number, timeoutMs: number): boolean {
  return pollEvents(fd, timeoutMs) !== 0;
}

/**
 * poll(2) for POLLIN on `fd` for up to `timeoutMs`: the revents bits (POLLIN, POLLERR, POLLHUP...),
 * 0 on timeout or EINTR. Blocks the calling thread: meant for capture workers.
 */
export function pollEvents(fd: number, timeoutMs: number): number {
  const lib = libc();
  pollFd[0] = fd;
  pollFd[1] = POLLIN; // events in the low half, revents (high half) cleared
  return lib.poll(pollFd, 1n, timeoutMs) > 0 ? pollRevents[0] : 0;
}

/** A socket option for {@link setsockopt}. */
export interface SocketOption {
  /** Protocol level, e.g. SOL_PACKET = 263. */
  level: number;
  /** Option name, e.g. PACKET_FANOUT = 18. */
  name: number;
  /** An int option value, or the raw option bytes. */
  value: number | Uint8Array<ArrayBuffer>;
}

/** setsockopt(2) on `fd`; throws a {@link LibcError} carrying errno on failure. */
export function setsockopt(fd: number, option: SocketOption): void {
  const lib = libc();
  let bytes: Uint8Array<ArrayBuffer>;
  if (typeof option.value === "number") {
    bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setInt32(0, option.value | 0, true);
  } else {
    bytes = option.value;
  }
  if (lib.setsockopt(fd, option.level, option.name, bytes, bytes.byteLength) !== 0) {
    fail(lib, `setsockopt(fd ${fd}, level ${option.level}, option ${option.name})`);
  }
}

/**
 * getsockopt(2): reads the option into `option.value` (as many bytes as it has); returns the
 * option's length. Throws a {@link LibcError} on failure.
 */
export function getsockopt(
  fd: number,
  option: { level: number; name: number; value: Uint8Array<ArrayBuffer> },
): number {
  const lib = libc();
  const len = new Uint32Array([option.value.byteLength]);
  if (lib.getsockopt(fd, option.level, option.name, option.value, len) !== 0) {
    fail(lib, `getsockopt(fd ${fd}, level ${option.level}, option ${option.name})`);
  }
  return len[0];
}

/** SOCK_CLOEXEC from linux/net.h: the socket is closed in child processes at exec. */
export const SOCK_CLOEXEC = 0o2000000;

/**
 * Marks `fd` close-on-exec (fcntl F_SETFD FD_CLOEXEC), so a child process (`--large-flow-command`)
 * does not inherit it: an inherited capture socket stays bound, and in its fanout group, until the
 * child exits. Throws a {@link LibcError} on failure.
 */
export function setCloseOnExec(fd: number): void {
  const lib = libc();
  if (lib.fcntl(fd, 2, /* F_SETFD */ 1 /* FD_CLOEXEC */) < 0) fail(lib, `fcntl(${fd}, F_SETFD)`);
}

/** socket(2); throws a {@link LibcError} on failure. */
export function socket(domain: number, type: number, protocol: number): number {
  const lib = libc();
  const fd = lib.socket(domain, type, protocol);
  if (fd < 0) fail(lib, `socket(${domain}, ${type}, ${protocol})`);
  return fd;
}

/** bind(2) to the socket address `address`; throws a {@link LibcError} on failure. */
export function bind(fd: number, address: Uint8Array<ArrayBuffer>): void {
  const lib = libc();
  if (lib.bind(fd, address, address.byteLength) !== 0) fail(lib, `bind(fd ${fd})`);
}

/** getsockname(2) into `out`; returns the address length. Throws a {@link LibcError} on failure. */
export function getsockname(fd: number, out: Uint8Array<ArrayBuffer>): number {
  const lib = libc();
  const len = new Uint32Array([out.byteLength]);
  if (lib.getsockname(fd, out, len) !== 0) fail(lib, `getsockname(fd ${fd})`);
  return len[0];
}

/** ioctl(2) with a pointer argument; throws a {@link LibcError} on failure. */
export function ioctl(fd: number, request: number, arg: Uint8Array<ArrayBuffer>): void {
  const lib = libc();
  if (lib.ioctl(fd, BigInt(request), arg) !== 0) fail(lib, `ioctl(fd ${fd}, ${request})`);
}

const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;

/**
 * Opens the FIFO at `path` for writing (waiting for a reader, as open(2) does) and sets its pipe's
 * capacity to `capacity` bytes (F_SETPIPE_SZ, at most /proc/sys/fs/pipe-max-size): the live
 * benchmark's pacer, which hands the offline reader 1 MiB at a time as a ring hands over a block.
 * Throws a {@link LibcError} on failure.
 */
export function openFifoWriter(path: string, capacity: number): number {
  const lib = libc();
  const fd = lib.open(new TextEncoder().encode(path + "\0"), O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(lib, `open(${path})`);
  if (lib.fcntl(fd, F_SETPIPE_SZ, capacity) < 0) {
    const err = libcError(lib, `fcntl(${fd}, F_SETPIPE_SZ, ${capacity})`);
    lib.close(fd);
    throw err;
  }
  return fd;
}

/** write(2): the bytes written (fewer than asked when interrupted); throws a {@link LibcError}. */
export function writeSome(fd: number, bytes: Uint8Array<ArrayBuffer>): number {
  const lib = libc();
  const n = Number(lib.write(fd, bytes, BigInt(bytes.byteLength)));
  if (n < 0) fail(lib, `write(fd ${fd})`);
  return n;
}

/** close(2) on a descriptor opened through this module; errors are ignored. */
export function closeFd(fd: number): void {
  libc().close(fd);
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_PRIVATE = 2;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_FAILED = 0xffffffffffffffffn;

/**
 * mmap(2) of `length` bytes of `fd` (read-write, shared), followed directly by `tail` bytes of
 * private anonymous memory (the caller's scratch space next to the mapping, so one ArrayBuffer
 * covers both). Unmap both with {@link unmap}(ptr, length + tail). Throws a {@link LibcError}.
 */
export function mapShared(fd: number, length: number, tail = 0): Deno.PointerObject {
  const lib = libc();
  const rw = PROT_READ | PROT_WRITE;
  const mapped = (ptr: Deno.PointerValue): ptr is Deno.PointerObject =>
    ptr !== null && Deno.UnsafePointer.value(ptr) !== MAP_FAILED;
  if (tail === 0) {
    const ptr = lib.mmap(null, BigInt(length), rw, MAP_SHARED, fd, 0n);
    if (!mapped(ptr)) fail(lib, `mmap(${length} bytes of fd ${fd})`);
    return ptr;
  }
  const total = BigInt(length + tail);
  const base = lib.mmap(null, total, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  if (!mapped(base)) fail(lib, `mmap(${length + tail} anonymous bytes)`);
  const ptr = lib.mmap(base, BigInt(length), rw, MAP_SHARED | MAP_FIXED, fd, 0n);
  if (!mapped(ptr)) {
    const err = libcError(lib, `mmap(${length} bytes of fd ${fd})`);
    lib.munmap(base, total);
    throw err;
  }
  return base;
}

/** munmap(2) of a mapping made by {@link mapShared} (its whole length, tail included). */
export function unmap(ptr: Deno.PointerObject, length: number): void {
  libc().munmap(ptr, BigInt(length));
}
/** The index of network interface `name` (if_nametoindex(3)), 0 when there is none. */
export function interfaceIndex(name: string): number {
  return libc().if_nametoindex(new TextEncoder().encode(name + "\0"));
}

/** A user from the password database. */
export interface PasswdEntry {
  uid: number;
  gid: number;
}

/** Looks a user up with getpwnam(3); undefined when there is no such user. */
export function lookupUser(user: string): PasswdEntry | undefined {
  const name = new TextEncoder().encode(user + "\0");
  const ptr = libc().getpwnam(name);
  if (ptr === null) return undefined;
  // struct passwd on LP64: pw_name @0, pw_passwd @8, pw_uid (u32) @16, pw_gid (u32) @20.
  const view = new Deno.UnsafePointerView(ptr);
  return { uid: view.getUint32(16), gid: view.getUint32(20) };
}

/** Looks a group up with getgrnam(3): its id, or undefined when there is no such group. */
export function lookupGroup(group: string): number | undefined {
  const ptr = libc().getgrnam(new TextEncoder().encode(group + "\0"));
  if (ptr === null) return undefined;
  // struct group on LP64: gr_name @0, gr_passwd @8, gr_gid (u32) @16.
  return new Deno.UnsafePointerView(ptr).getUint32(16);
}

/**
 * Switches the whole process (glibc applies set*id to every thread) to `user` and its primary
 * group, dropping supplementary groups. Call it after the capture handles are open.
 */
export function dropPrivileges(user: string): void {
  const entry = lookupUser(user);
  if (entry === undefined) {
    throw new Error(`Unknown user "${user}": expected an account in the password database`);
  }
  const lib = libc();
  const groups = new Uint32Array([entry.gid]);
  // Order matters: groups and gid can only be changed while still root.
  if (lib.setgroups(1n, groups) !== 0) fail(lib, `Dropping privileges to ${user}: setgroups`);
  if (lib.setgid(entry.gid) !== 0) fail(lib, `Dropping privileges to ${user}: setgid`);
  if (lib.setuid(entry.uid) !== 0) fail(lib, `Dropping privileges to ${user}: setuid`);
  if (entry.uid !== 0 && lib.setuid(0) === 0) {
    throw new Error(`Dropping privileges to ${user} failed: root could be regained`);
  }
}

/** The real user id of the process. */
export function getuid(): number {
  return libc().getuid();
}

/** The real group id of the process. */
export function getgid(): number {
  return libc().getgid();
}

const SHUT_RDWR = 2;
const AF_INET = 2;
const AF_INET6 = 10;

/**
 * Shuts down (both directions) this process's TCP sockets whose local and remote ports are among
 * `ports` (`"<local>:<remote>"`); returns how many. Deno keeps a TLS socket open while its
 * handshake is pending, even after `close()` (the handshake holds it): shutting the socket down
 * makes that handshake fail at once, which frees the descriptor. Sockets are found by asking every
 * descriptor in /proc/self/fd for its ports (getsockname/getpeername: a few µs each).
 */
export function shutdownTcpSockets(ports: ReadonlySet<string>): number {
  if (ports.size === 0) return 0;
  const lib = libc();
  const address = new Uint8Array(128);
  const length = new Uint32Array(1);
  const portOf = (call: typeof lib.getsockname, fd: number): number => {
    length[0] = address.length;
    if (call(fd, address, new Uint8Array(length.buffer)) !== 0) return -1;
    // sockaddr_in and sockaddr_in6 both hold the port, big-endian, at offset 2.
    const family = address[0] | (address[1] << 8);
    return family === AF_INET || family === AF_INET6 ? (address[2] << 8) | address[3] : -1;
  };
  let done = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(entry.name);
    const local = portOf(lib.getsockname, fd);
    if (local < 0) continue;
    const remote = portOf(lib.getpeername, fd);
    if (remote < 0 || !ports.has(`${local}:${remote}`)) continue;
    if (lib.shutdown(fd, SHUT_RDWR) === 0) done++;
  }
  return done;
}

/** _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set. */
const CAPABILITY_VERSION_3 = 0x20080522;
/** CAP_NET_ADMIN (12) and CAP_NET_RAW (13), the capture's capabilities, in the first word. */
const CAPTURE_CAPABILITIES = (1 << 12) | (1 << 13);

/**
 * Turns CAP_NET_RAW and CAP_NET_ADMIN on or off in the calling thread's effective set (capset(2) is
 * per thread). They stay permitted, so a capture worker turns them on only while it (re)opens its
 * interface; the rest of the time a raw socket cannot be opened from that thread by mistake. Returns
 * false when the thread does not hold them (after --user, or without the capabilities at all).
 */
export function setCaptureCapabilities(on: boolean): boolean {
  const lib = libc();
  const header = new Uint32Array([CAPABILITY_VERSION_3, 0]); // pid 0: the calling thread
  const data = new Uint32Array(6); // {effective, permitted, inheritable} × 2 words
  const headerBytes = new Uint8Array(header.buffer);
  const dataBytes = new Uint8Array(data.buffer);
  if (lib.capget(headerBytes, dataBytes) !== 0) return false;
  if ((data[1] & CAPTURE_CAPABILITIES) !== CAPTURE_CAPABILITIES) return false;
  data[0] = on ? data[0] | CAPTURE_CAPABILITIES : data[0] & ~CAPTURE_CAPABILITIES;
  return lib.capset(headerBytes, dataBytes) === 0;
}

/** struct statvfs is 112 bytes on 64-bit Linux (glibc and musl); reused by every call. */
const statvfsBuffer = new Uint8Array(112);

/**
 * Free bytes (for an unprivileged user: f_bavail) and size of the filesystem holding `path`, from
 * statvfs(3) (Deno has no statfs); null when the call fails (the path does not exist, say).
 */
export function filesystemSpace(path: string): { free: number; size: number } | null {
  const name = new TextEncoder().encode(path + "\0");
  if (libc().statvfs(name, statvfsBuffer) !== 0) return null;
  const view = new DataView(statvfsBuffer.buffer);
  // Offsets of f_frsize, f_blocks and f_bavail in the LP64 layout.
  const frsize = Number(view.getBigUint64(8, true));
  const blocks = Number(view.getBigUint64(16, true));
  const bavail = Number(view.getBigUint64(32, true));
  return { free: bavail * frsize, size: blocks * frsize };
}

const SYNC_FILE_RANGE_WRITE = 2;

/** True where {@link startWriteback} and {@link fdatasyncInBackground} do something. */
export function writebackAvailable(): boolean {
  const lib = libcOrNull();
  return lib !== null && lib.sync_file_range !== null && lib.fdatasync !== null;
}

/**
 * Asks the kernel to start writing `length` bytes of `fd` from `offset` to disk
 * (sync_file_range with SYNC_FILE_RANGE_WRITE: does not wait). A hint: failures are ignored.
 */
export function startWriteback(fd: number, offset: number, length: number): void {
  libcOrNull()?.sync_file_range?.(fd, BigInt(offset), BigInt(length), SYNC_FILE_RANGE_WRITE);
}

/**
 * fdatasync(2) of `fd` on Deno's blocking-call pool, not awaited: the calling thread goes on. Its
 * result does not matter (a later fsync reports errors); a descriptor closed or reused meanwhile
 * only makes it fail or flush another file.
 */
export function fdatasyncInBackground(fd: number): void {
  libcOrNull()?.fdatasync?.(fd).catch(() => {});
}
