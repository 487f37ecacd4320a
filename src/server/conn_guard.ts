/**
 * Connection guard in front of Deno.serve, which has no header or idle timeout (denoland/deno#3515):
 * a slowloris client that never finishes its headers, or a client that stops reading a pcap stream,
 * would hold a connection (and a query slot) forever. The guard accepts TCP (or TLS) connections
 * itself and relays each one to the HTTP server on a loopback port, closing it when
 *
 * - a request's headers are not complete `headerTimeout` seconds after its first byte (or after the
 *   connection opened, for the first request),
 * - nothing moved in either direction for `idleTimeout` seconds (an abandoned or stalled
 *   connection; closing it cancels the response stream, which frees the query's slot),
 * - more than `maxConnections` are open (new ones are closed at once).
 *
 * Closing the relay's upstream side makes Deno.serve cancel the response body, so queries end as
 * "cancelled" in the metrics.
 */

/** Timeouts and caps of the guard. */
export interface GuardOptions {
  /** Seconds a client has to send a complete request head, default 10. */
  headerTimeout?: number;
  /** Seconds without a byte in either direction before a connection is closed, default 120. */
  idleTimeout?: number;
  /** Connections open at once; more are refused, default 256. */
  maxConnections?: number;
}

/** What a guard reports about its connections. */
export interface GuardStats {
  open: number;
  accepted: number;
  refused: number;
  headerTimeouts: number;
  idleTimeouts: number;
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
const CRLFCRLF = [13, 10, 13, 10];

/**
 * Listens on `listen` (TLS when `tls` is given) and relays every connection to `upstreamPort` on
 * 127.0.0.1 under the timeouts of `options`.
 */
export function startGuard(
  listen: { host: string; port: number; tls?: { cert: string; key: string } },
  upstreamPort: number,
  options: GuardOptions = {},
): ConnectionGuard {
  const headerMs = (options.headerTimeout ?? 10) * 1000;
  const idleMs = (options.idleTimeout ?? 120) * 1000;
  const maxConnections = options.maxConnections ?? 256;
  const listener: Deno.Listener = listen.tls
    ? Deno.listenTls({
      hostname: listen.host,
      port: listen.port,
      cert: listen.tls.cert,
      key: listen.tls.key,
    })
    : Deno.listen({ hostname: listen.host, port: listen.port });
  const relays = new Set<Relay>();
  const stats: GuardStats = {
    open: 0,
    accepted: 0,
    refused: 0,
    headerTimeouts: 0,
    idleTimeouts: 0,
  };
  let stopped = false;

  const end = (relay: Relay): void => {
    if (relay.closed) return;
    relay.closed = true;
    relays.delete(relay);
    stats.open = relays.size;
    closeQuietly(relay.client);
    if (relay.upstream) closeQuietly(relay.upstream);
  };

  // One timer for every connection: cheaper than re-arming a timeout per chunk.
  const timer = setInterval(() => {
    const now = performance.now();
    for (const relay of relays) {
      if (relay.headerDeadline !== 0 && now > relay.headerDeadline) {
        stats.headerTimeouts++;
        end(relay);
      } else if (now - relay.lastActivity > idleMs) {
        stats.idleTimeouts++;
        end(relay);
      }
    }
  }, Math.max(50, Math.min(1000, headerMs / 4, idleMs / 4)));
  Deno.unrefTimer(timer);

  const serve = async (relay: Relay): Promise<void> => {
    try {
      relay.upstream = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
      if (relay.closed) return end(relay);
      await Promise.race([
        pump(relay.client, relay.upstream, relay, true),
        pump(relay.upstream, relay.client, relay, false),
      ]);
    } catch {
      // A reset, a failed TLS handshake or a timeout closing the sockets under the pumps.
    } finally {
      end(relay);
    }
  };

  const acceptLoop = async (): Promise<void> => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch (error) {
        if (stopped || error instanceof Deno.errors.BadResource) return;
        continue; // EMFILE and the like: keep serving the connections we have
      }
      if (relays.size >= maxConnections) {
        stats.refused++;
        closeQuietly(client);
        continue;
      }
      stats.accepted++;
      const now = performance.now();
      const relay: Relay = {
        client,
        upstream: null,
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
      for (const relay of [...relays]) end(relay);
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
      else relay.answered = true;
      let at = 0;
      while (at < n) at += await to.write(buffer.subarray(at, n));
      relay.lastActivity = performance.now();
    }
  }

  function watchHead(relay: Relay, buffer: Uint8Array, n: number): void {
    if (relay.headerDeadline === 0) {
      if (!relay.answered) return; // request body bytes
      // The first byte after a response: a new request on a kept-alive connection.
      relay.answered = false;
      relay.matched = 0;
      relay.headerDeadline = performance.now() + headerMs;
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

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}
