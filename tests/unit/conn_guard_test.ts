/**
 * The connection guard (src/server/conn_guard.ts) in-process: a Deno.serve upstream on a Unix
 * socket, raw TCP clients on loopback. Each case checks what the client sees (its answer, or the
 * connection closed on it) and the guard's exact counts. Timeouts are a few hundred milliseconds;
 * no case asserts how fast anything happened.
 */
import assert from "node:assert/strict";
import {
  type ConnectionGuard,
  type GuardOptions,
  startGuard,
} from "../../src/server/conn_guard.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An upstream HTTP server on a Unix socket and a guard in front of it; `body` runs, then both stop. */
function withGuard(
  options: GuardOptions,
  body: (guard: ConnectionGuard) => Promise<void>,
): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cc-unit-guard-" });
    const path = `${dir}/http.sock`;
    const server = Deno.serve(
      { path, onListen: () => {} },
      async (request) => {
        // A body the guard cut off cannot be read; the answer would go nowhere anyway.
        const body = await request.text().catch(() => "");
        return new Response(`${request.method} ${new URL(request.url).pathname} ${body.length}\n`);
      },
    );
    const guard = startGuard({ host: "127.0.0.1", port: 0 }, path, options);
    try {
      await body(guard);
    } finally {
      guard.close();
      await server.shutdown();
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

/** A raw TCP client of the guard. */
function connect(guard: ConnectionGuard): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port: guard.addr.port });
}

/** Reads until the peer closes (or `limit` bytes); the text read. */
async function readToEnd(conn: Deno.Conn, limit = 1 << 20): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      n = null; // reset by the guard
    }
    if (n === null) return text;
    text += decoder.decode(buffer.subarray(0, n));
    if (text.length >= limit) return text;
  }
}

/** Reads one HTTP response (head and the body its Content-Length gives). */
async function readResponse(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return text;
    text += decoder.decode(buffer.subarray(0, n));
    const head = text.indexOf("\r\n\r\n");
    const length = /content-length: (\d+)/i.exec(text);
    if (head >= 0 && length && text.length >= head + 4 + Number(length[1])) return text;
  }
}

/** Waits until `done()` holds, polling every 20 ms, at most `ms`. */
async function until(done: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`Condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const GET = "GET /x HTTP/1.1\r\nHost: cutcap\r\n\r\n";

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // closed already
  }
}

Deno.test(
  "guard: relays requests on a kept-alive connection both ways",
  withGuard({}, async (guard) => {
    const conn = await connect(guard);
    await conn.write(encoder.encode(GET));
    assert.match(await readResponse(conn), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nGET \/x 0\n$/);
    await conn.write(
      encoder.encode("POST /y HTTP/1.1\r\nHost: cutcap\r\nContent-Length: 5\r\n\r\nhello"),
    );
    assert.match(await readResponse(conn), /\r\n\r\nPOST \/y 5\n$/);
    assert.equal(guard.stats.open, 1);
    closeQuietly(conn);
    await until(() => guard.stats.open === 0);
    assert.deepEqual(guard.stats, {
      open: 0,
      accepted: 1,
      refused: 0,
      headerTimeouts: 0,
      idleTimeouts: 0,
      requestTimeouts: 0,
      refusedPerSource: 0,
    });
  }),
);

Deno.test(
  "guard: a request head not finished within headerTimeout is closed and counted",
  withGuard({ headerTimeout: 0.3, idleTimeout: 30, requestTimeout: 30 }, async (guard) => {
    const slow = await connect(guard);
    await slow.write(encoder.encode("GET / HTTP/1.1\r\nHost: cut"));
    assert.equal(await readToEnd(slow), "", "closed without an answer");
    closeQuietly(slow);
    // A connection that never sends a byte is a head not finished too.
    const silent = await connect(guard);
    assert.equal(await readToEnd(silent), "");
    closeQuietly(silent);
    await until(() => guard.stats.open === 0);
    assert.equal(guard.stats.headerTimeouts, 2);
    assert.equal(guard.stats.idleTimeouts + guard.stats.requestTimeouts, 0);
  }),
);

Deno.test(
  "guard: a silent kept-alive connection is closed after idleTimeout",
  withGuard({ headerTimeout: 30, idleTimeout: 0.3, requestTimeout: 30 }, async (guard) => {
    const conn = await connect(guard);
    await conn.write(encoder.encode(GET));
    assert.match(await readResponse(conn), /GET \/x 0\n$/);
    assert.equal(await readToEnd(conn), "", "then closed");
    closeQuietly(conn);
    await until(() => guard.stats.open === 0);
    assert.equal(guard.stats.idleTimeouts, 1);
    assert.equal(guard.stats.headerTimeouts + guard.stats.requestTimeouts, 0);
  }),
);

Deno.test(
  "guard: a body trickled past requestTimeout is closed although bytes keep coming",
  withGuard({ headerTimeout: 30, idleTimeout: 30, requestTimeout: 0.4 }, async (guard) => {
    const conn = await connect(guard);
    await conn.write(
      encoder.encode("POST /y HTTP/1.1\r\nHost: cutcap\r\nContent-Length: 100\r\n\r\n"),
    );
    let sent = 0;
    const trickle = setInterval(() => {
      conn.write(encoder.encode("x")).then(() => sent++, () => clearInterval(trickle));
    }, 50);
    try {
      assert.equal(await readToEnd(conn), "");
    } finally {
      clearInterval(trickle);
    }
    closeQuietly(conn);
    await until(() => guard.stats.open === 0);
    assert.ok(sent < 100, `${sent} body bytes sent before the close: the body never completed`);
    assert.equal(guard.stats.requestTimeouts, 1);
    assert.equal(guard.stats.headerTimeouts + guard.stats.idleTimeouts, 0);
  }),
);

Deno.test(
  "guard: connections past maxConnections are closed at once and counted as refused",
  withGuard({ maxConnections: 2 }, async (guard) => {
    const kept = [await connect(guard), await connect(guard)];
    await until(() => guard.stats.accepted === 2);
    const third = await connect(guard);
    assert.equal(await readToEnd(third), "", "refused: closed without an answer");
    closeQuietly(third);
    assert.deepEqual([guard.stats.accepted, guard.stats.refused, guard.stats.refusedPerSource], [
      2,
      1,
      0,
    ]);
    // The kept ones still work.
    await kept[0].write(encoder.encode(GET));
    assert.match(await readResponse(kept[0]), /GET \/x 0\n$/);
    for (const conn of kept) closeQuietly(conn);
    await until(() => guard.stats.open === 0);
    const again = await connect(guard);
    await again.write(encoder.encode(GET));
    assert.match(await readResponse(again), /GET \/x 0\n$/, "a slot freed is used again");
    closeQuietly(again);
    await until(() => guard.stats.open === 0);
    assert.equal(guard.stats.accepted, 3);
  }),
);

Deno.test(
  "guard: past maxPerSource one address is refused and counted per source",
  withGuard({ maxConnections: 10, maxPerSource: 1 }, async (guard) => {
    const first = await connect(guard);
    await until(() => guard.stats.accepted === 1);
    const second = await connect(guard);
    assert.equal(await readToEnd(second), "");
    closeQuietly(second);
    assert.deepEqual([guard.stats.accepted, guard.stats.refused, guard.stats.refusedPerSource], [
      1,
      1,
      1,
    ]);
    closeQuietly(first);
    await until(() => guard.stats.open === 0);
  }),
);

Deno.test(
  "guard: close() ends every open connection",
  withGuard({}, async (guard) => {
    const conns = [await connect(guard), await connect(guard), await connect(guard)];
    await until(() => guard.stats.open === 3);
    guard.close();
    for (const conn of conns) {
      assert.equal(await readToEnd(conn), "");
      closeQuietly(conn);
    }
    await until(() => guard.stats.open === 0);
    await assert.rejects(connect(guard), Deno.errors.ConnectionRefused);
  }),
);
