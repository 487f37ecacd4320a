/**
 * systemd's notify protocol without libsystemd: one datagram on the AF_UNIX socket named by
 * $NOTIFY_SOCKET ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."), sent with libc's socket,
 * sendto and close (ffi/libc.ts). Not for the hot path: a few calls a minute.
 *
 * @module
 */
import { libcOrNull } from "./libc.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(sockaddr_un.sun_path) on Linux. */
const SUN_PATH_MAX = 108;

/**
 * The sockaddr_un for a $NOTIFY_SOCKET value and its length, or null when the value is not an
 * AF_UNIX address (a leading "@" names an abstract socket, as systemd writes it).
 */
export function notifySocketAddress(
  value: string,
): { address: Uint8Array<ArrayBuffer>; length: number } | null {
  const abstract = value.startsWith("@");
  if (!abstract && !value.startsWith("/")) return null;
  const name = new TextEncoder().encode(abstract ? value.slice(1) : value);
  // Abstract names are not NUL-terminated: the length alone delimits them; paths need room for a NUL.
  if (name.length + 1 > SUN_PATH_MAX) return null;
  const address = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, abstract ? 3 : 2);
  return { address, length: abstract ? 3 + name.length : 2 + name.length + 1 };
}

/**
 * Sends `state` (e.g. "READY=1") to systemd. Returns true when the datagram was sent, false when
 * $NOTIFY_SOCKET is unset (not started by systemd with Type=notify) or sending failed: being
 * unable to notify must never stop a capture.
 */
export function sdNotify(state: string): boolean {
  const socketName = Deno.env.get("NOTIFY_SOCKET");
  if (socketName === undefined || socketName === "") return false;
  const target = notifySocketAddress(socketName);
  if (target === null) return false;
  const lib = libcOrNull();
  if (lib === null) return false;
  const fd = lib.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    const message = new TextEncoder().encode(state);
    const sent = lib.sendto(
      fd,
      message,
      BigInt(message.length),
      MSG_NOSIGNAL,
      target.address,
      target.length,
    );
    return Number(sent) === message.length;
  } finally {
    lib.close(fd);
  }
}

/**
 * How often to send "WATCHDOG=1", in seconds: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
 * advises, or undefined when systemd's watchdog is off or meant for another process
 * ($WATCHDOG_PID).
 */
export function watchdogInterval(): number | undefined {
  const usec = Deno.env.get("WATCHDOG_USEC");
  if (usec === undefined || !/^\d+$/.test(usec) || Number(usec) === 0) return undefined;
  const pid = Deno.env.get("WATCHDOG_PID");
  if (pid !== undefined && pid !== "" && Number(pid) !== Deno.pid) return undefined;
  return Number(usec) / 2 / 1e6;
}
