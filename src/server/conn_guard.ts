/**
 * Connection guard in front of Deno.serve, which has no header or idle timeout (denoland/deno#3515;
 * Deno's node:http and node:tls accept `headersTimeout`/`handshakeTimeout` but ignore them — a
 * partial request head or a silent TLS client stays open, measured on Deno 2.9.6): a slowloris
 * client that never finishes its headers or its TLS handshake, or a client that stops reading a pcap
 * stream, would hold a connection (and a query slot) forever. The guard accepts TCP (or TLS)
 * connections itself and relays each one to the HTTP server on a Unix socket in a private
 * directory (no port another local user could reach around the guard), closing it when
 *
 * - the TLS handshake and a request's headers are not complete `headerTimeout` seconds after its
 *   first byte (or after the connection opened, for the first request),
 * - the server has not started answering a request `requestTimeout` seconds after its first byte (a
 *   body trickled a byte at a time),
 * - nothing moved in either direction for `idleTimeout` seconds (an abandoned or stalled
 *   connection; closing it cancels the response stream, which frees the query's slot),
 * - more than `maxConnections` are open, or more than `maxPerSource` from one address (new ones are
 *   closed at once).
 *
 * A connection counts until its relay has ended and its descriptor is released: a TLS socket whose
 * handshake is pending is shut down (ffi/libc.ts) as well as closed, since Deno would otherwise keep
 * it open. HTTP/2 with prior knowledge (h2c) is relayed under the idle timeout only (its frames have
 * no request heads to watch). Closing the relay's upstream side makes Deno.serve cancel the response
 * body, so queries end as "cancelled" in the metrics.
 */
import { shutdownTcpSockets } from "../../ffi/libc.ts";

/** Timeouts and caps of the guard. */
export interface GuardOptions {
  /** Seconds a client has to send a complete request head, default 10. */
  headerTimeout?: number;
  /** Seconds without a byte in either direction before a connection is closed, default 120. */
  idleTimeout?: number;
  /** Connections open at once; more are refused, default 256. */
  maxConnections?: number;
  /** Connections open at once from one client address; more are refused, default 32. */
  maxPerSource?: number;
  /** Seconds from a request's first byte until the server starts answering, default 60. */
  requestTimeout?: number;
}

/** What a guard reports about its connections. */
export interface GuardStats {
  open: number;
  accepted: number;
  refused: number;
  headerTimeouts: number;
  idleTimeouts: number;
  requestTimeouts: number;
  /** Refused because their source address had `maxPerSource` connections open. */
  refusedPerSource: number;
}

/** A running guard. */
export interface ConnectionGuard {
  /** The address it listens on. */
  addr: Deno.NetAddr;
  readonly stats: GuardStats;
  /** Stops accepting and closes every connection. */
  close(): void;
}

/** State of one relayed connection. */
interface Relay {
  client: Deno.Conn;
  upstream: Deno.Conn | null;
  /** The client's address (the per-source count's key). */
  source: string;
  /** "<local port>:<remote port>" of a TLS connection, to shut its socket down; "" for TCP. */
  tlsPorts: string;
  /** Deadline for the server to start answering the current request, or 0. */
  requestDeadline: number;
  /** HTTP/2 prior knowledge: no heads to watch. */
  h2: boolean;
  /** performance.now() of the last byte in either direction. */
  lastActivity: number;
  /** Deadline for the request head being read, or 0 while none is awaited. */
  headerDeadline: number;
  /** How many bytes of "\r\n\r\n" the client's bytes have matched so far. */
  matched: number;
  /** The server sent bytes since the last request head: the client's next byte starts a request. */
  answered: boolean;
  closed: boolean;
}

const RELAY_BUFFER = 64 * 1024;
/** Most refused TLS connections waiting for their shutdown. */
const REFUSED_BATCH = 64;
const CRLFCRLF = [13, 10, 13, 10];
/** The HTTP/2 connection preface starts with these bytes ("PRI * HTTP/2.0"). */
const H2_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0");

/**
 * Listens on `listen` (TLS when `tls` is given) and relays every connection to the Unix socket at
 * `upstreamPath` under the timeouts of `options`.
 */
export function startGuard(
  listen: { host: string; port: number; tls?: { cert: string; key: string } },
  upstreamPath: string,
  options: GuardOptions = {},
): ConnectionGuard {
  const headerMs = (options.headerTimeout ?? 10) * 1000;
  const idleMs = (options.idleTimeout ?? 120) * 1000;
  const requestMs = (options.requestTimeout ?? 60) * 1000;
  const maxConnections = options.maxConnections ?? 256;
  const maxPerSource = options.maxPerSource ?? 32;
  const listener: Deno.Listener = listen.tls
    ? Deno.listenTls({
      hostname: listen.host,
      port: listen.port,
      cert: listen.tls.cert,
      key: listen.tls.key,
    })
    : Deno.listen({ hostname: listen.host, port: listen.port });
  /** Every relay until it has ended (and its descriptor is released). */
  const relays = new Set<Relay>();
  const perSource = new Map<string, number>();
  const stats: GuardStats = {
    open: 0,
    accepted: 0,
    refused: 0,
    headerTimeouts: 0,
    idleTimeouts: 0,
    requestTimeouts: 0,
    refusedPerSource: 0,
  };
  let stopped = false;

  /** Closes both sides; the relay stays counted until `serve` has finished with it. */
  const end = (relay: Relay): void => {
    if (relay.closed) return;
    relay.closed = true;
    closeQuietly(relay.client);
    if (relay.upstream) closeQuietly(relay.upstream);
  };

  /** Ends relays the timer found overdue; TLS sockets are also shut down (see the module doc). */
  const endAll = (overdue: Relay[]): void => {
    shutdownQuietly(new Set(overdue.filter((r) => r.tlsPorts !== "").map((r) => r.tlsPorts)));
    for (const relay of overdue) end(relay);
  };

  /**
   * TLS connections refused at accept, shut down together (one descriptor scan) on the next turn, or
   * at once when `REFUSED_BATCH` are waiting.
   */
  let refusedTls: Deno.Conn[] = [];
  const flushRefused = (): void => {
    const batch = refusedTls;
    refusedTls = [];
    shutdownQuietly(new Set(batch.map(tlsPortsOf)));
    for (const conn of batch) closeQuietly(conn);
  };
  const refuse = (client: Deno.Conn): void => {
    stats.refused++;
    if (!listen.tls) return closeQuietly(client);
    if (refusedTls.length === 0) setTimeout(() => refusedTls.length > 0 && flushRefused(), 0);
    refusedTls.push(client);
    if (refusedTls.length >= REFUSED_BATCH) flushRefused();
  };

  // One timer for every connection: cheaper than re-arming a timeout per chunk.
  const timer = setInterval(() => {
    const now = performance.now();
    const overdue: Relay[] = [];
    for (const relay of relays) {
      if (relay.closed) continue;
      if (relay.headerDeadline !== 0 && now > relay.headerDeadline) {
        stats.headerTimeouts++;
      } else if (relay.requestDeadline !== 0 && now > relay.requestDeadline) {
        stats.requestTimeouts++;
      } else if (now - relay.lastActivity > idleMs) {
        stats.idleTimeouts++;
      } else continue;
      overdue.push(relay);
    }
    if (overdue.length > 0) endAll(overdue);
  }, Math.max(50, Math.min(1000, headerMs / 4, idleMs / 4, requestMs / 4)));
  Deno.unrefTimer(timer);

  const serve = async (relay: Relay): Promise<void> => {
    try {
      // The handshake first (under the header deadline): a silent TLS client costs no upstream.
      if (relay.tlsPorts !== "") await (relay.client as Deno.TlsConn).handshake();
      if (relay.closed) return;
      relay.upstream = await Deno.connect({ transport: "unix", path: upstreamPath });
      if (relay.closed) return;
      await Promise.race([
        pump(relay.client, relay.upstream, relay, true),
        pump(relay.upstream, relay.client, relay, false),
      ]);
    } catch {
      // A reset, a failed TLS handshake or a timeout closing the sockets under the pumps.
    } finally {
      end(relay);
      relays.delete(relay);
      stats.open = relays.size;
      const left = (perSource.get(relay.source) ?? 1) - 1;
      if (left > 0) perSource.set(relay.source, left);
      else perSource.delete(relay.source);
    }
  };

  const acceptLoop = async (): Promise<void> => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch (error) {
        if (stopped || error instanceof Deno.errors.BadResource) return;
        // EMFILE and the like: keep serving the connections we have, without spinning.
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (relays.size >= maxConnections) {
        refuse(client);
        continue;
      }
      const remote = client.remoteAddr as Deno.NetAddr;
      const fromSource = perSource.get(remote.hostname) ?? 0;
      if (fromSource >= maxPerSource) {
        stats.refusedPerSource++;
        refuse(client);
        continue;
      }
      perSource.set(remote.hostname, fromSource + 1);
      stats.accepted++;
      const now = performance.now();
      const relay: Relay = {
        client,
        upstream: null,
        source: remote.hostname,
        tlsPorts: listen.tls ? tlsPortsOf(client) : "",
        requestDeadline: now + requestMs,
        h2: false,
        lastActivity: now,
        headerDeadline: now + headerMs,
        matched: 0,
        answered: false,
        closed: false,
      };
      relays.add(relay);
      stats.open = relays.size;
      serve(relay);
    }
  };
  acceptLoop();

  return {
    addr: listener.addr as Deno.NetAddr,
    stats,
    close(): void {
      stopped = true;
      clearInterval(timer);
      closeQuietly(listener);
      endAll([...relays]);
    },
  };

  /** Copies one direction; the client's bytes are watched for the end of each request head. */
  async function pump(from: Deno.Conn, to: Deno.Conn, relay: Relay, fromClient: boolean) {
    const buffer = new Uint8Array(RELAY_BUFFER);
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) return;
      relay.lastActivity = performance.now();
      if (fromClient) watchHead(relay, buffer, n);
      else {
        relay.answered = true;
        relay.requestDeadline = 0;
      }
      let at = 0;
      while (at < n) at += await to.write(buffer.subarray(at, n));
      relay.lastActivity = performance.now();
    }
  }

  function watchHead(relay: Relay, buffer: Uint8Array, n: number): void {
    if (relay.h2) return;
    if (relay.headerDeadline === 0) {
      if (!relay.answered) return; // request body bytes
      // The first byte after a response: a new request on a kept-alive connection.
      relay.answered = false;
      relay.matched = 0;
      relay.headerDeadline = performance.now() + headerMs;
      relay.requestDeadline = performance.now() + requestMs;
    } else if (relay.matched === 0 && startsWith(buffer, n, H2_PREFACE)) {
      // h2c prior knowledge: the preface ends with its own blank line, then binary frames follow.
      relay.h2 = true;
      relay.headerDeadline = 0;
      relay.requestDeadline = 0;
      return;
    }
    let matched = relay.matched;
    for (let i = 0; i < n; i++) {
      const b = buffer[i];
      matched = b === CRLFCRLF[matched] ? matched + 1 : b === 13 ? 1 : 0;
      if (matched === 4) {
        relay.headerDeadline = 0;
        relay.answered = false;
        matched = 0;
        break;
      }
    }
    relay.matched = matched;
  }
}

/** "<local port>:<remote port>" of a connection, as `shutdownTcpSockets` finds sockets. */
function tlsPortsOf(conn: Deno.Conn): string {
  return `${(conn.localAddr as Deno.NetAddr).port}:${(conn.remoteAddr as Deno.NetAddr).port}`;
}

function shutdownQuietly(ports: Set<string>): void {
  try {
    shutdownTcpSockets(ports);
  } catch {
    // No /proc or no FFI: closing is all that is left.
  }
}

function startsWith(buffer: Uint8Array, n: number, prefix: Uint8Array): boolean {
  if (n < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buffer[i] !== prefix[i]) return false;
  return true;
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}
