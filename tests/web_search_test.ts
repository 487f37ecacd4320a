/**
 * The page's pure parts: the URL state and the query it means, time bounds, the flow query behind a
 * row's pcap link, shell quoting, session expiry.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  formatQueryTime,
  normalizeTime,
  readSearchState,
  searchQuery,
  searchUrl,
} from "../src/web/search.ts";
import { addTerm, shellQuote } from "../src/web/page.ts";
import { flowQuery } from "../src/web/sensor_source.ts";
import { SESSION_SECONDS, SessionStore } from "../src/web/session.ts";
import { parseQuery } from "../src/query/parse.ts";
import type { FlowRecord } from "../src/query/flows.ts";

Deno.test("the URL holds the whole state and round-trips; defaults are left out", () => {
  const url = "/?q=host+198.18.0.1&range=1h&sort=packets&dir=desc&page=3&hist=bytes";
  const state = readSearchState(new URL(url, "http://x").searchParams);
  assert.equal(state.q, "host 198.18.0.1");
  assert.equal(state.range, "1h");
  assert.equal(state.sort, "packets");
  assert.equal(state.descending, true);
  assert.equal(state.page, 3);
  assert.equal(state.bytes, true);
  assert.equal(searchUrl(state), url);
  assert.equal(
    searchUrl(state, { q: "", range: "", sort: "first", descending: false, page: 1, bytes: false }),
    "/",
  );
  const odd = readSearchState(new URLSearchParams("sort=__proto__&page=-2&range=7y&view=x"));
  assert.deepEqual([odd.sort, odd.page, odd.range, odd.view], ["first", 1, "", "search"]);
});

Deno.test("the query the page runs: the user's query and the time range joined with and", () => {
  const state = (params: string) => readSearchState(new URLSearchParams(params));
  const run = (params: string) => {
    const q = searchQuery(state(params));
    assert.ok("text" in q, JSON.stringify(q));
    return q.text;
  };
  assert.equal(run("q=tcp+or+udp"), "tcp or udp");
  assert.equal(run("q=tcp+or+udp&range=15m"), "(tcp or udp) and after 15m ago");
  assert.equal(
    run("q=port+53&from=2026-11-23T10:00&to=2026-11-23"),
    "(port 53) and after 2026-11-23T10:00:00Z and before 2026-11-23",
  );
  assert.equal(run("range=24h"), "after 24h ago");
  assert.deepEqual(searchQuery(state("q=port+99999")), {
    field: "q",
    position: 5,
    message: "Invalid port 99999 at position 5: expected 0-65535",
  });
  const bad = searchQuery(state("q=tcp&to=tomorrow"));
  assert.ok("field" in bad && bad.field === "to");
  assert.equal(normalizeTime("2026-11-23 10:00:05.5"), "2026-11-23T10:00:05.5Z");
  assert.equal(normalizeTime("2026-11-23T10:00:05+02:00"), "2026-11-23T10:00:05+02:00");
  assert.equal(normalizeTime("2026-02-30"), null);
  assert.equal(normalizeTime("10:00"), null);
});

Deno.test("formatQueryTime keeps the index's microseconds exactly through the parser", () => {
  for (const t of [1_800_000_000, 1_800_000_000.000001, 1_700_000_123.999999, 1_234_567_890.5]) {
    const text = formatQueryTime(t);
    assert.match(text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    const q = parseQuery(`after ${text}`);
    assert.ok(q.type === "time");
    assert.equal(q.at, Math.round(t * 1e6) / 1e6, text);
  }
});

Deno.test("a row's pcap query names the flow's ends, protocol, ports, VLAN and time span", () => {
  const record = {
    kind: "ipv6",
    src: "2001:db8::1",
    dst: "2001:db8::2",
    srcPort: 5353,
    dstPort: 53,
    proto: 17,
    vlan: 7,
    first: 1_800_000_000.25,
    last: 1_800_000_002.5,
  } as FlowRecord;
  assert.equal(
    flowQuery(record),
    "host 2001:db8::1 and host 2001:db8::2 and proto 17 and port 5353 and port 53 and vlan 7 and " +
      "after 2027-01-15T08:00:00.250000Z and before 2027-01-15T08:00:02.500001Z",
  );
  parseQuery(flowQuery(record));
  assert.equal(flowQuery({ ...record, proto: 1 }).includes("port"), false);
  assert.equal(flowQuery({ ...record, kind: "l2" }), "");
});

Deno.test("addTerm narrows the whole query; shellQuote survives quotes", () => {
  assert.equal(addTerm("", "host 198.18.0.1"), "host 198.18.0.1");
  assert.equal(addTerm(" tcp or udp ", "host 198.18.0.1"), "tcp or udp and host 198.18.0.1");
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  const out = new TextDecoder().decode(
    new Deno.Command("sh", { args: ["-c", `printf %s ${shellQuote('a\'b $x "c"')}`] })
      .outputSync().stdout,
  );
  assert.equal(out, `a'b $x "c"`);
});

Deno.test("a session expires after its lifetime", async () => {
  let now = 1_000_000;
  const sessions = new SessionStore({ secure: false, now: () => now });
  const app = new Hono();
  app.post("/open", (c) => {
    sessions.open(c);
    return c.text("ok");
  });
  app.get("/who", (c) => c.text(sessions.find(c) ? "in" : "out"));
  const cookie = (await app.request("/open", { method: "POST" })).headers.get("set-cookie")!
    .split(";")[0];
  const who = async () => await (await app.request("/who", { headers: { Cookie: cookie } })).text();
  assert.equal(await who(), "in");
  now += SESSION_SECONDS * 1000 - 1;
  assert.equal(await who(), "in");
  now += 1;
  assert.equal(await who(), "out");
  assert.equal(
    await (await app.request("/who", { headers: { Cookie: "cutcap_session=forged" } })).text(),
    "out",
  );
});
