/**
 * The process's own numbers from the kernel, read through libc: Deno refuses `/proc/self` to any
 * program without --allow-all, which the shipped tasks do not grant, so /proc/self/status and
 * /proc/self/fd are read with open(2)/read(2)/getdents64(2) under --allow-ffi (already needed for
 * libpcap) instead.
 *
 * @module
 */
import { libc } from "./libc.ts";

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const SYS_GETDENTS64 = 217; // x86_64
const RLIMIT_NOFILE = 7;

function openPath(path: string, flags: number): number {
  return libc().open(new TextEncoder().encode(path + "\0"), flags | O_RDONLY | O_CLOEXEC);
}

/** Memory figures of /proc/self/status, in bytes; undefined when it cannot be read. */
export interface ProcessMemory {
  /** VmRSS: resident set size. */
  resident: number;
  /** VmSize: virtual memory size. */
  virtual: number;
  /** VmData: data segment (heap) size. */
  data: number;
}

/** Reads VmRSS, VmSize and VmData from /proc/self/status. */
export function processMemory(): ProcessMemory | undefined {
  const fd = openPath("/proc/self/status", 0);
  if (fd < 0) return undefined;
  const buf = new Uint8Array(8192);
  let length = 0;
  try {
    for (
      let n;
      length < buf.length &&
      (n = Number(libc().read(fd, buf.subarray(length), BigInt(buf.length - length)))) > 0;
    ) {
      length += n;
    }
  } finally {
    libc().close(fd);
  }
  const text = new TextDecoder().decode(buf.subarray(0, length));
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN) * 1024;
  const memory = { resident: kib("VmRSS"), virtual: kib("VmSize"), data: kib("VmData") };
  return Number.isFinite(memory.resident) ? memory : undefined;
}

/** Open file descriptors (entries of /proc/self/fd, not counting the one reading it). */
export function openFdCount(): number | undefined {
  const fd = openPath("/proc/self/fd", O_DIRECTORY);
  if (fd < 0) return undefined;
  const buf = new Uint8Array(32768);
  const view = new DataView(buf.buffer);
  let entries = 0;
  try {
    for (;;) {
      const n = Number(libc().syscall(BigInt(SYS_GETDENTS64), fd, buf, BigInt(buf.length)));
      if (n < 0) return undefined;
      if (n === 0) break;
      // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16 @16, d_type u8 @18, d_name @19.
      for (let at = 0; at < n; at += view.getUint16(at + 16, true)) {
        const dot = buf[at + 19] === 0x2e;
        const name = dot && (buf[at + 20] === 0 || (buf[at + 20] === 0x2e && buf[at + 21] === 0));
        if (!name) entries++;
      }
    }
  } finally {
    libc().close(fd);
  }
  return entries - 1;
}

/** The soft limit on open file descriptors (RLIMIT_NOFILE); undefined if unknown. */
export function maxFds(): number | undefined {
  const limit = new BigUint64Array(2);
  if (libc().getrlimit(RLIMIT_NOFILE, new Uint8Array(limit.buffer)) !== 0) return undefined;
  return limit[0] >= BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(limit[0]);
}
