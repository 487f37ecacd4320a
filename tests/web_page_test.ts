/**
 * The analyst's page without a browser: what the server renders for a search (rows, counts,
 * histogram, links) against `/flows` and `/query` over a generated archive, the validation endpoint,
 * sorting and paging, escaping, and token login with session cookies and CSRF. The browser tests
 * (web_browser_test.ts) drive the same page through Chromium.
 */
import assert from "node:assert/strict";
import { createApp } from "../src/server/app.ts";
import { DEFAULT_QUERY_POLICY, queryRoutes } from "../src/server/query_routes.ts";
import { fakeSensor } from "./support/fake_sensor.ts";
import { replayIntoArchive } from "./support/query_server.ts";
import type { FlowRecord } from "../src/query/flows.ts";
import { pcapRecordCount, tableRows } from "./support/web.ts";

const work = Deno.makeTempDirSync({ prefix: "cutcap-web-" });
const out = `${work}/out`;
await replayIntoArchive(out, [
  { traffic: { seed: 15, packets: 6000, rate: 200 }, compress: "none", rotateSize: "256KiB" },
], { workDir: work });

function app(extra: Parameters<typeof createApp>[1] = {}) {
  const sensor = fakeSensor({ outDir: out, workers: [] });
  const routes = queryRoutes({ catalog: () => sensor.catalog(), policy: DEFAULT_QUERY_POLICY });
  return createApp(sensor, { routes, ...extra });
}

async function flows(a: ReturnType<typeof app>, q: string): Promise<FlowRecord[]> {
  const r = await a.request(`/flows?q=${encodeURIComponent(q)}`);
  assert.equal(r.status, 200);
  return await r.json();
}

Deno.test("a search renders the matching flows, their totals and a histogram of the same packets", async () => {
  const a = app();
  const q = "tcp and port 443";
  const expected = await flows(a, q);
  assert.ok(expected.length > 60, `enough flows for two pages: ${expected.length}`);
  const r = await a.request(`/?q=${encodeURIComponent(q)}`);
  assert.equal(r.status, 200);
  const text = await r.text();
  const packets = expected.reduce((s, f) => s + f.packets, 0);
  assert.match(text, new RegExp(`data-flows="${expected.length}"`));
  assert.match(text, new RegExp(`data-packets="${packets}"`));
  assert.match(text, new RegExp(`data-total="${packets}"`), "histogram total = matching packets");
  const bars = [...text.matchAll(/<rect [^>]*data-packets="(\d+)"/g)].map((m) => Number(m[1]));
  assert.equal(bars.reduce((s, n) => s + n, 0), packets);
  const bytes = [...text.matchAll(/<rect [^>]*data-bytes="(\d+)"/g)].map((m) => Number(m[1]));
  const storedBytes = expected.reduce((s, f) => s + f.bytes, 0);
  assert.ok(Math.abs(bytes.reduce((s, n) => s + n, 0) - storedBytes) <= bars.length, "bytes too");
  assert.match(
    text,
    /<a id="hist-unit" href="\/\?q=tcp\+and\+port\+443&amp;hist=bytes">show bytes/,
  );

  // Page 1 and 2, sorted by first time, hold the first 100 flows of /flows sorted the same way.
  const byTime = [...expected].sort((x, y) => x.first - y.first);
  const shown = [...tableRows(text)];
  const page2 = tableRows(await (await a.request(`/?q=${encodeURIComponent(q)}&page=2`)).text());
  shown.push(...page2);
  assert.equal(shown.length, 100);
  assert.deepEqual(
    shown.map((s) => `${s.src} ${s.dst} ${s.packets}`),
    byTime.slice(0, 100).map((f) => `${f.src} ${f.dst} ${f.packets}`),
  );

  // Sorted by stored packets, largest first.
  const sorted = tableRows(
    await (await a.request(`/?q=${encodeURIComponent(q)}&sort=packets&dir=desc`)).text(),
  );
  assert.equal(sorted[0].packets, Math.max(...expected.map((f) => f.packets)));

  // Download is /query of the same text; each row's pcap link holds exactly its flow's packets.
  const download = /id="download" class="button" href="([^"]+)"/.exec(text)![1];
  assert.equal(download.replaceAll("&amp;", "&"), `/query?q=${encodeURIComponent(q)}`);
  for (const row of shown.slice(0, 5)) {
    const answer = new Uint8Array(await (await a.request(row.pcap)).arrayBuffer());
    assert.equal(pcapRecordCount(answer), row.packets, row.pcap);
  }
  assert.match(text, /cutcap read --server http:\/\/localhost &#39;tcp and port 443&#39;/);
});

Deno.test("the page's script and stylesheet are served from the program, as written", async () => {
  const a = app();
  for (const [name, type] of [["app.js", "text/javascript"], ["style.css", "text/css"]]) {
    const r = await a.request(`/web/${name}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", new RegExp(`^${type}`));
    const file = await Deno.readTextFile(new URL(`../src/web/static/${name}`, import.meta.url));
    assert.equal(await r.text(), file);
  }
  assert.equal((await a.request("/web/other.js")).status, 404);
});

Deno.test("clicking an address narrows the query; the time range joins the query", async () => {
  const a = app();
  const [first] = await flows(a, "udp");
  const text = await (await a.request(`/?q=udp`)).text();
  const href = new RegExp(
    `href="(/\\?q=udp\\+and\\+host\\+${first.src.replaceAll(".", "\\.")}[^"]*)"`,
  )
    .exec(text);
  assert.ok(href, "address link adds host X");
  const from = new Date(Math.ceil(first.first) * 1000).toISOString();
  const to = new Date((Math.ceil(first.first) + 30) * 1000).toISOString();
  const ranged = await (await a.request(`/?q=udp&from=${from}&to=${to}`)).text();
  const within = await flows(a, `(udp) and after ${from} and before ${to}`);
  assert.match(ranged, new RegExp(`data-flows="${within.length}"`));
  assert.ok(within.length > 0);
  assert.match(ranged, /<option value="" selected>/);
});

Deno.test("malformed queries: the validation endpoint and the page name the server's message and position", async () => {
  const a = app();
  const v = await (await a.request("/api/validate?q=host%201.2.3.4%20and%20port%2065555")).json();
  assert.deepEqual(v, {
    ok: false,
    field: "q",
    position: 22,
    message: "Invalid port 65555 at position 22: expected 0-65535",
  });
  assert.deepEqual(await (await a.request("/api/validate?q=port%2080")).json(), { ok: true });
  const r = await a.request("/?q=port%2065555%20%3Cb%3E");
  assert.equal(r.status, 400);
  const text = await r.text();
  assert.match(text, /Invalid port 65555 at position 5/);
  assert.match(text, /<code class="where">port <mark>6<\/mark>5555 &lt;b&gt;<\/code>/);
  assert.doesNotMatch(text, /id="flows"/);
  const badTime = await (await a.request("/?q=udp&from=yesterday")).text();
  assert.match(badTime, /Invalid from time &quot;yesterday&quot;/);
});

/** The status of an answer, its body read to the end (a stream holds a query slot until then). */
async function statusOf(answer: Response | Promise<Response>): Promise<number> {
  const r = await answer;
  await r.arrayBuffer();
  return r.status;
}

Deno.test("with a token: login form, wrong token, session cookie, CSRF-protected logout", async () => {
  for (const secure of [false, true]) {
    const a = app({ token: "s3cret", secure });
    const html = { Accept: "text/html" };
    const denied = await a.request("/?q=udp", { headers: html });
    assert.equal(denied.status, 401);
    assert.match(await denied.text(), /<form id="login" method="post" action="\/login">/);
    assert.equal(await statusOf(a.request("/flows?q=udp")), 401);
    assert.equal(
      (await a.request("/web/app.js")).status,
      200,
      "the login form's assets are public",
    );

    const login = (token: string, headers: Record<string, string> = {}) =>
      a.request("/login", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams({ token, next: "/?q=udp" }).toString(),
      });
    const wrong = await login("guess");
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /Wrong token/);
    assert.equal(wrong.headers.get("set-cookie"), null);
    assert.equal((await login("s3cret", { "Sec-Fetch-Site": "cross-site" })).status, 403);

    const ok = await login("s3cret", { "Sec-Fetch-Site": "same-origin" });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get("location"), "/?q=udp");
    const setCookie = ok.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /^cutcap_session=[\w-]{43}; Max-Age=43200; Path=\/; HttpOnly; /);
    assert.match(setCookie, /SameSite=Strict/);
    assert.equal(/; Secure/.test(setCookie), secure);
    const cookie = { Cookie: setCookie.split(";")[0] };
    const page = await a.request("/?q=udp", { headers: cookie });
    assert.equal(page.status, 200);
    const pageText = await page.text();
    assert.match(pageText, /\(with the token in <code>CUTCAP_TOKEN<\/code>\)/);
    const csrf = /name="csrf" value="([^"]+)"/.exec(pageText)![1];
    assert.equal(await statusOf(a.request("/flows?q=udp", { headers: cookie })), 200);
    assert.equal(
      await statusOf(a.request("/flows?q=udp", { headers: { Authorization: "Bearer s3cret" } })),
      200,
      "the API keeps accepting the bearer header",
    );
    assert.equal(
      await statusOf(
        a.request("/flows?q=udp", { headers: { ...cookie, Authorization: "Bearer guess" } }),
      ),
      401,
      "a request with a header is judged by its token, whatever its cookie",
    );

    const logout = (body: Record<string, string>) =>
      a.request("/logout", {
        method: "POST",
        headers: { ...cookie, "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(body).toString(),
      });
    assert.equal((await logout({})).status, 403, "logout without the CSRF token");
    const wrongCsrf = (csrf[0] === "x" ? "y" : "x") + csrf.slice(1); // 1 in 64 tokens starts with x
    assert.equal((await logout({ csrf: wrongCsrf })).status, 403);
    const out = await logout({ csrf });
    assert.equal(out.status, 303);
    assert.match(out.headers.get("set-cookie") ?? "", /cutcap_session=; Max-Age=0/);
    assert.equal(await statusOf(a.request("/flows?q=udp", { headers: cookie })), 401);
  }
});

Deno.test("installPage serves the page for another source (the fleet's shape): sensor column, status tables, all escaped", async () => {
  const { Hono } = await import("hono");
  const { installPage } = await import("../src/web/mod.ts");
  const row = {
    kind: "ipv4",
    src: "198.18.0.1",
    dst: "198.19.0.1",
    srcPort: 40000,
    dstPort: 443,
    proto: 6,
    vlan: 0,
    etherType: 0,
    first: 1_800_000_000.25,
    last: 1_800_000_001,
    packets: 3,
    bytes: 180,
    file: "2027/01/15/x.pcap",
    sensor: "<script>alert(1)</script>",
    communityId: "1:abc+def=",
    totalPackets: 10,
    totalBytes: 900,
    cut: true,
    cutPacket: 4,
    etherTypeName: "",
    endReason: "fin",
    pcapQuery: "host 198.18.0.1",
  };
  const asked: string[] = [];
  const app = new Hono();
  installPage(app, {
    source: {
      flows: (q) => {
        asked.push(q.text);
        return Promise.resolve({ rows: [row], flows: 1, packets: 3, bytes: 180, sortedOver: 1 });
      },
      histogram: () =>
        Promise.resolve({
          from: 1_800_000_000,
          bucketSeconds: 1,
          packets: [2, 1],
          bytes: [120, 60],
        }),
      status: () =>
        Promise.resolve({
          version: "0.0.0",
          tables: [{
            title: "Sensors",
            columns: ["Sensor", "Reachable"],
            rows: [["<i>s1", "yes"]],
          }],
          settings: [["ClickHouse", "http://ch1:8123/"]],
          history: [],
          queryableLagSeconds: 5,
        }),
      queryPath: (text) => `/query?fleet=1&q=${encodeURIComponent(text)}`,
    },
  });
  const text = await (await app.request("/?q=port%20443")).text();
  assert.deepEqual(asked, ["port 443"]);
  for (const header of ["Sensor", "Community ID", "Total packets", "Total bytes", "Cut", "End"]) {
    assert.match(text, new RegExp(`>${header}(<| [▲▼])`), header);
  }
  assert.ok(text.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
  assert.doesNotMatch(text, /<script>alert/);
  assert.match(text, /href="\/\?q=port\+443\+and\+community-id\+1%3Aabc%2Bdef%3D"/);
  assert.match(text, /id="download" class="button" href="\/query\?fleet=1&amp;q=port%20443"/);
  const status = await (await app.request("/?view=status")).text();
  assert.ok(status.includes("<td>&lt;i&gt;s1</td>") && status.includes("http://ch1:8123/"));
  assert.match(status, /Newest queryable packet<\/th><td id="lag">5s ago/);
});

Deno.test("searches past the page's limit get 503 and a message; the next one runs", async () => {
  const { Hono } = await import("hono");
  const { installPage } = await import("../src/web/mod.ts");
  const gate = Promise.withResolvers<void>();
  const empty = { rows: [], flows: 0, packets: 0, bytes: 0, sortedOver: 0 };
  const app = new Hono();
  installPage(app, {
    maxSearches: 1,
    source: {
      flows: async () => {
        await gate.promise;
        return empty;
      },
      histogram: () => Promise.resolve({ from: 0, bucketSeconds: 1, packets: [], bytes: [] }),
      status: () => Promise.reject(new Error("not asked")),
      queryPath: (text) => `/query?q=${encodeURIComponent(text)}`,
    },
  });
  const slow = app.request("/?q=tcp");
  await new Promise((r) => setTimeout(r, 10));
  const busy = await app.request("/?q=udp");
  assert.equal(busy.status, 503);
  assert.match(await busy.text(), /Too many searches: 1 running, the limit is 1/);
  gate.resolve();
  assert.equal((await slow).status, 200);
  const after = await app.request("/?q=udp");
  assert.equal(after.status, 200);
  await after.body?.cancel();
});
