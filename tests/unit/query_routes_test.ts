/**
 * The query API's routes (src/server/query_routes.ts) on a hono app in-process over a crafted
 * archive: the answer's bytes and headers, limits from the URL and stenoread's headers, the
 * format rules, every refusal's status and message, the concurrency cap, and /flows.
 */
import assert from "node:assert/strict";
import { Catalog } from "../../src/archive/catalog.ts";
import {
  DEFAULT_QUERY_POLICY,
  type QueryPolicy,
  queryRoutes,
} from "../../src/server/query_routes.ts";
import { answerHeader, type PlacedFile, placeFile, recordBytes } from "../support/archive_craft.ts";
import { bytes, ethernet, ipv4, sll, udp } from "../support/pcap_craft.ts";

const T0 = 1_700_000_000_000_000; // µs

/** Five UDP packets of two flows, one a second, from worker 0. */
function archive(dir: string): PlacedFile {
  const frame = (host: number, size: number) =>
    ethernet(
      0x0800,
      ipv4(`198.18.0.${host}`, "198.18.0.9", 17, udp(1000 + host, 53, new Uint8Array(size))),
    );
  return placeFile(dir, {
    records: [1, 2, 1, 2, 1].map((host, i) => ({ us: T0 + i * 1e6, frame: frame(host, 10 * i) })),
  });
}

/** The routes over the archive at `dir`, with `policy` over the defaults. */
function routes(dir: string, policy: Partial<QueryPolicy> = {}) {
  return queryRoutes({
    catalog: () => Catalog.open(dir),
    policy: { ...DEFAULT_QUERY_POLICY, ...policy },
  });
}

/** Runs `body` with a fresh archive directory, removed afterwards. */
function withDir(body: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cc-unit-routes-" });
    try {
      await body(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

/** Status, the headers a test looks at, and the body. */
async function call(app: ReturnType<typeof routes>, path: string, init: RequestInit = {}) {
  const r = await app.request(path, init);
  const headers = Object.fromEntries(
    [...r.headers].filter(([name]) => name !== "content-disposition"),
  );
  return {
    status: r.status,
    headers,
    disposition: r.headers.get("content-disposition"),
    body: new Uint8Array(await r.arrayBuffer()),
  };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test(
  "query routes: GET and POST /query answer the same bytes, with the limits and the outcome",
  withDir(async (dir) => {
    const file = archive(dir);
    const app = routes(dir);
    const whole = bytes(answerHeader(1), ...[0, 1, 2, 3, 4].map((i) => recordBytes(file, i)));
    const get = await call(app, "/query?q=udp");
    assert.equal(get.status, 200);
    assert.deepEqual(get.body, whole);
    assert.deepEqual(get.headers, {
      "content-type": "application/vnd.tcpdump.pcap",
      "x-cutcap-answer": `complete packets=5 bytes=${whole.length}`,
      "x-cutcap-limit-packets": "10000000",
      "x-cutcap-limit-bytes": String(64 * 1024 ** 3),
    });
    assert.match(
      get.disposition ?? "",
      /^attachment; filename="cutcap-\d{4}-\d\d-\d\dT[\d-]+Z\.pcap"$/,
    );
    const post = await call(app, "/query", { method: "POST", body: "udp" });
    assert.deepEqual(post.body, whole);
    const host = await call(app, "/query?q=host%20198.18.0.2");
    assert.deepEqual(host.body, bytes(answerHeader(1), recordBytes(file, 1), recordBytes(file, 3)));
  }),
);

Deno.test(
  "query routes: the smallest of limit, max_bytes, Steno-Limit-* and the policy applies",
  withDir(async (dir) => {
    const file = archive(dir);
    const app = routes(dir, { maxPackets: 4 });
    const first = (n: number) =>
      bytes(answerHeader(1), ...[0, 1, 2, 3, 4].slice(0, n).map((i) => recordBytes(file, i)));
    const policy = await call(app, "/query?q=udp");
    assert.deepEqual(policy.body, first(4));
    assert.equal(policy.headers["x-cutcap-limit-packets"], "4");
    assert.equal(
      policy.headers["x-cutcap-answer"],
      `truncated by the packet limit 4: packets=4 bytes=${first(4).length}; more packets match`,
    );
    const url = await call(app, "/query?q=udp&limit=9");
    assert.equal(url.headers["x-cutcap-limit-packets"], "4", "the policy caps the client");
    const steno = await call(app, "/query?q=udp&limit=3", {
      headers: { "Steno-Limit-Packets": "2" },
    });
    assert.deepEqual(steno.body, first(2));
    assert.equal(steno.headers["x-cutcap-limit-packets"], "2");
    const zero = await call(app, "/query?q=udp&limit=3", {
      headers: { "Steno-Limit-Packets": "0" },
    });
    assert.deepEqual(zero.body, first(3), "0 = no limit from stenoread");
    const room = first(2).length + 10;
    const capped = await call(app, `/query?q=udp&max_bytes=${room}`);
    assert.deepEqual(capped.body, first(2));
    assert.equal(
      capped.headers["x-cutcap-answer"],
      `truncated by the byte limit ${room}: packets=2 bytes=${first(2).length}; more packets match`,
    );
    const stenoBytes = await call(app, "/query?q=udp", {
      headers: { "Steno-Limit-Bytes": String(first(1).length) },
    });
    assert.deepEqual(stenoBytes.body, first(1));
  }),
);

Deno.test(
  "query routes: bad requests are refused with 400 and a message naming the problem",
  withDir(async (dir) => {
    archive(dir);
    const app = routes(dir);
    const refusals: [string, RequestInit, string][] = [
      ["/query", {}, "Missing query: give it as the request body or as ?q="],
      ["/query?q=udp&limit=0", {}, 'Invalid limit "0": expected a whole number above 0'],
      ["/query?q=udp&limit=1.5", {}, 'Invalid limit "1.5": expected a whole number above 0'],
      ["/query?q=udp&max_bytes=-1", {}, 'Invalid max_bytes "-1": expected a whole number above 0'],
      ["/query?q=udp&format=xml", {}, 'Invalid format "xml": expected pcap or pcapng'],
      [
        "/query?q=udp",
        { headers: { "Steno-Limit-Bytes": "lots" } },
        'Invalid Steno-Limit-Bytes header "lots": expected a whole number (0 = no limit)',
      ],
      [
        "/query?q=udp&seed=70000",
        {},
        'Invalid Community ID seed "70000": expected an integer 0-65535',
      ],
      ["/flows?q=udp&limit=x", {}, 'Invalid limit "x": expected a whole number above 0'],
      ["/flows", {}, "Missing query: give it as the request body or as ?q="],
      [
        "/query/pivot?input=csv",
        { method: "POST", body: "" },
        'Invalid input "csv": expected eve or zeek',
      ],
    ];
    for (const [path, init, message] of refusals) {
      const r = await call(app, path, init);
      assert.deepEqual({ status: r.status, body: text(r.body) }, {
        status: 400,
        body: message + "\n",
      }, path);
    }
    const parse = await call(app, "/query?q=port%2099999");
    assert.equal(parse.status, 400);
    assert.match(text(parse.body), /^Invalid port 99999 at position 5: expected 0-65535\n$/);
  }),
);

Deno.test(
  "query routes: a query body over the limit is refused with 413, declared or chunked",
  withDir(async (dir) => {
    archive(dir);
    const app = routes(dir, { maxBodyBytes: 16 });
    const declared = await call(app, "/query", {
      method: "POST",
      body: "udp or tcp or icmp or arp",
    });
    assert.deepEqual(
      { status: declared.status, body: text(declared.body) },
      { status: 413, body: "Query body over 16 bytes\n" },
    );
    const chunked = await call(app, "/query", {
      method: "POST",
      body: ReadableStream.from([
        new TextEncoder().encode("udp or tcp "),
        new TextEncoder().encode("or icmp or arp"),
      ]),
    });
    assert.deepEqual(
      { status: chunked.status, body: text(chunked.body) },
      { status: 413, body: "Query body over 16 bytes\n" },
    );
    assert.equal((await call(app, "/query", { method: "POST", body: "udp" })).status, 200);
  }),
);

Deno.test(
  "query routes: past maxConcurrent running answers, /query and /flows get 503 until one ends",
  withDir(async (dir) => {
    // An answer larger than the 256 KiB head start stays running until its body is read.
    const big = (host: number) =>
      ethernet(
        0x0800,
        ipv4(`198.18.1.${host}`, "198.18.1.9", 17, udp(7, 53, new Uint8Array(1400))),
      );
    placeFile(dir, {
      records: Array.from({ length: 400 }, (_, i) => ({ us: T0 + i * 1000, frame: big(i % 5) })),
    });
    const app = routes(dir, { maxConcurrent: 1 });
    const running = await app.request("/query?q=udp");
    assert.equal(running.status, 200);
    assert.equal(running.headers.get("x-cutcap-answer"), null, "still running: no outcome yet");
    const busy = "Too many queries: 1 running, the limit is 1\n";
    for (const path of ["/query?q=udp", "/flows?q=udp"]) {
      const r = await call(app, path);
      assert.deepEqual({ status: r.status, body: text(r.body) }, { status: 503, body: busy }, path);
    }
    const answer = new Uint8Array(await running.arrayBuffer());
    assert.equal(answer.length, 24 + 400 * (16 + 1442));
    assert.equal((await call(app, "/query?q=udp&limit=1")).status, 200, "the slot is free again");
  }),
);

Deno.test(
  "query routes: several link types give pcapng, unless pcap is asked for (then a header says so)",
  withDir(async (dir) => {
    archive(dir);
    placeFile(dir, {
      iface: "any",
      linkType: 113,
      records: [{
        us: T0 + 2.5e6,
        frame: sll(0x0800, ipv4("198.18.2.1", "198.18.2.2", 17, udp(9, 53))),
      }],
    });
    const app = routes(dir);
    const chosen = await call(app, "/query?q=udp");
    assert.equal(chosen.headers["content-type"], "application/x-pcapng");
    assert.match(chosen.disposition ?? "", /\.pcapng"$/);
    assert.equal(
      chosen.headers["x-cutcap-answer"],
      `complete packets=6 bytes=${chosen.body.length}`,
    );
    assert.equal(chosen.headers["x-cutcap-left-out"], undefined);
    const accept = await call(app, "/query?q=udp", {
      headers: { Accept: "application/vnd.tcpdump.pcap" },
    });
    const pcap = await call(app, "/query?q=udp&format=pcap");
    for (const r of [accept, pcap]) {
      assert.equal(r.headers["content-type"], "application/vnd.tcpdump.pcap");
      assert.equal(
        r.headers["x-cutcap-left-out"],
        "files of link types other than the answer's (the time range holds EN10MB, LINUX_SLL): " +
          "ask for format=pcapng to get them all",
      );
      assert.equal(r.headers["x-cutcap-answer"], `complete packets=5 bytes=${r.body.length}`);
    }
    const ng = await call(app, "/query?q=host%20198.18.0.1", {
      headers: { Accept: "application/x-pcapng" },
    });
    assert.equal(ng.headers["content-type"], "application/x-pcapng");
  }),
);

Deno.test(
  "query routes: /flows answers JSON or NDJSON records with the flow limit in a header",
  withDir(async (dir) => {
    const file = archive(dir);
    const app = routes(dir, { defaultFlows: 7 });
    const json = await call(app, "/flows?q=udp");
    assert.equal(json.status, 200);
    assert.equal(json.headers["content-type"], "application/json");
    assert.equal(json.headers["x-cutcap-flow-limit"], "7");
    const records = JSON.parse(text(json.body));
    // The flow of 198.18.0.1 (packets 0, 2, 4) starts first; packet i is 42 + 10 i bytes on the wire.
    assert.deepEqual(
      records.map((
        r: Record<string, unknown>,
      ) => [r.src, r.dst, r.packets, r.bytes, r.first, r.last, r.file]),
      [
        ["198.18.0.1", "198.18.0.9", 3, 42 + 62 + 82, T0 / 1e6, T0 / 1e6 + 4, file.path],
        ["198.18.0.2", "198.18.0.9", 2, 52 + 72, T0 / 1e6 + 1, T0 / 1e6 + 3, file.path],
      ],
    );
    const ndjson = await call(app, "/flows?q=udp&limit=1&format=ndjson");
    assert.equal(ndjson.headers["content-type"], "application/x-ndjson");
    assert.equal(ndjson.headers["x-cutcap-flow-limit"], "1");
    const lines = text(ndjson.body).split("\n");
    assert.equal(lines.length, 2, "one record and the final newline");
    assert.deepEqual(JSON.parse(lines[0]), records[0]);
    const accept = await call(app, "/flows?q=host%20198.18.0.2", {
      headers: { Accept: "application/x-ndjson" },
    });
    assert.deepEqual(text(accept.body), JSON.stringify(records[1]) + "\n");
  }),
);
