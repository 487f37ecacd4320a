/**
 * The server's access control (src/server/auth.ts) on a hono app in-process: which requests pass,
 * the exact refusals (status, body, WWW-Authenticate), open metrics, sessions with CSRF, public
 * paths, cross-site writes, the token file and the rule for non-loopback addresses.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  checkBoundAddress,
  DENIED_MESSAGE,
  readTokenFile,
  refuseCrossSite,
  requireToken,
  type RequireTokenOptions,
} from "../../src/server/auth.ts";
import { CSRF_HEADER, SESSION_COOKIE, SessionStore } from "../../src/web/session.ts";
import { UsageError } from "../../src/cli/options.ts";

const TOKEN = "s3cret.Token_~+/-==";

/** An app behind requireToken with a route per kind of path; /open-session starts a session. */
function app(options: RequireTokenOptions = {}): Hono {
  const a = new Hono();
  a.use(requireToken(TOKEN, options));
  for (const path of ["/metrics", "/healthz", "/readyz", "/query", "/login", "/assets/app.css"]) {
    a.get(path, (c) => c.text(`got ${path}`));
    a.post(path, (c) => c.text(`posted ${path}`));
  }
  a.post("/open-session", (c) => c.text(options.sessions!.open(c).csrf));
  return a;
}

/** Status, body and WWW-Authenticate of a request. */
async function ask(
  a: Hono,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: string; challenge: string | null }> {
  const r = await a.request(path, init);
  return { status: r.status, body: await r.text(), challenge: r.headers.get("WWW-Authenticate") };
}

const DENIED = { status: 401, body: DENIED_MESSAGE, challenge: "Bearer" };

Deno.test("auth: only the exact bearer token passes; every refusal is the same 401", async () => {
  const a = app();
  assert.deepEqual(await ask(a, "/query", { headers: { Authorization: `Bearer ${TOKEN}` } }), {
    status: 200,
    body: "got /query",
    challenge: null,
  });
  for (
    const header of [
      undefined,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Basic ${btoa(`user:${TOKEN}`)}`,
      "Bearer",
      `Bearer ${TOKEN} extra`,
      `bearer${TOKEN}`,
    ]
  ) {
    const headers: Record<string, string> = header === undefined ? {} : { Authorization: header };
    assert.deepEqual(await ask(a, "/query", { headers }), DENIED, `Authorization: ${header}`);
  }
  assert.deepEqual(await ask(a, "/metrics"), DENIED, "metrics need the token by default");
});

Deno.test("auth: --open-metrics opens /metrics, /healthz and /readyz only", async () => {
  const a = app({ openMetrics: true });
  for (const path of ["/metrics", "/healthz", "/readyz"]) {
    assert.deepEqual(await ask(a, path), { status: 200, body: `got ${path}`, challenge: null });
  }
  assert.deepEqual(await ask(a, "/query"), DENIED);
  assert.deepEqual(await ask(a, "/metrics/x"), DENIED);
});

Deno.test("auth: public paths are exact, or prefixes when they end in /", async () => {
  const a = app({ publicPaths: ["/login", "/assets/"] });
  assert.equal((await ask(a, "/login")).status, 200);
  assert.equal((await ask(a, "/assets/app.css")).status, 200);
  assert.deepEqual(await ask(a, "/loginx"), DENIED);
  assert.deepEqual(await ask(a, "/query"), DENIED);
});

Deno.test("auth: a session passes reads; writes need its CSRF token, header or form field", async () => {
  const sessions = new SessionStore({ secure: false });
  const a = app({ sessions, publicPaths: ["/open-session"] });
  const opened = await a.request("/open-session", { method: "POST" });
  const csrf = await opened.text();
  const cookie = /^([^;]+)/.exec(opened.headers.get("Set-Cookie") ?? "")![1];
  assert.ok(cookie.startsWith(`${SESSION_COOKIE}=`), cookie);
  const withCookie = (init: RequestInit = {}) => ({
    ...init,
    headers: { Cookie: cookie, ...(init.headers as Record<string, string> | undefined) },
  });
  assert.equal((await ask(a, "/query", withCookie())).body, "got /query");
  const refused = {
    status: 403,
    body: "Missing or wrong CSRF token: reload the page and try again\n",
    challenge: null,
  };
  assert.deepEqual(await ask(a, "/query", withCookie({ method: "POST" })), refused);
  assert.deepEqual(
    await ask(a, "/query", withCookie({ method: "POST", headers: { [CSRF_HEADER]: "wrong" } })),
    refused,
  );
  assert.equal(
    (await ask(a, "/query", withCookie({ method: "POST", headers: { [CSRF_HEADER]: csrf } }))).body,
    "posted /query",
  );
  const form = new URLSearchParams({ csrf });
  assert.equal(
    (await ask(
      a,
      "/query",
      withCookie({
        method: "POST",
        body: form,
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
      }),
    )).body,
    "posted /query",
  );
  // An Authorization header is judged alone: a wrong token fails even with a live session.
  assert.deepEqual(
    await ask(a, "/query", withCookie({ headers: { Authorization: "Bearer wrong" } })),
    DENIED,
  );
  assert.deepEqual(
    await ask(a, "/query", { headers: { Cookie: `${SESSION_COOKIE}=forged` } }),
    DENIED,
  );
});

Deno.test("auth: cross-site writes are refused, reads and same-origin writes pass", async () => {
  const a = new Hono();
  a.use(refuseCrossSite());
  a.all("/x", (c) => c.text("ok"));
  const post = (headers: Record<string, string>) =>
    ask(a, "http://cutcap.test/x", { method: "POST", headers });
  const refused = { status: 403, body: "Cross-site request refused\n", challenge: null };
  assert.deepEqual(await post({ "Sec-Fetch-Site": "cross-site" }), refused);
  assert.deepEqual(await post({ "Sec-Fetch-Site": "same-site" }), refused);
  assert.deepEqual(await post({ Origin: "http://evil.test", Host: "cutcap.test" }), refused);
  assert.deepEqual(await post({ Origin: "not a url", Host: "cutcap.test" }), refused);
  assert.equal((await post({ "Sec-Fetch-Site": "same-origin" })).status, 200);
  assert.equal((await post({ "Sec-Fetch-Site": "none" })).status, 200);
  assert.equal((await post({ Origin: "http://cutcap.test", Host: "cutcap.test" })).status, 200);
  assert.equal((await post({})).status, 200, "no browser headers: not a browser");
  const get = await ask(a, "http://cutcap.test/x", { headers: { "Sec-Fetch-Site": "cross-site" } });
  assert.equal(get.status, 200);
});

Deno.test("auth: the token file's first line, trimmed; empty or unsendable tokens are named", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-unit-auth-" });
  try {
    const file = (text: string) => {
      Deno.writeTextFileSync(`${dir}/token`, text);
      return `${dir}/token`;
    };
    assert.equal(readTokenFile(file(`  ${TOKEN}  \nsecond line\n`)), TOKEN);
    assert.throws(() => readTokenFile(file("\nsecret\n")), {
      message: `Token file ${dir}/token is empty: expected a token on its first line`,
    });
    for (const bad of ["a b", "tök", "a=b", "semi;colon"]) {
      assert.throws(() => readTokenFile(file(bad)), {
        message: `Token file ${dir}/token holds characters a bearer token cannot have: expected ` +
          "letters, digits and . _ ~ + / - (then = padding), as `openssl rand -base64 32` makes",
      }, bad);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("auth: a bound address off loopback needs TLS and a token, or --insecure", () => {
  const none = { tls: false, token: false };
  for (
    const host of ["127.0.0.1", "127.255.0.9", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]
  ) {
    checkBoundAddress(host, none);
  }
  const message = (host: string) =>
    `Listening on ${host} exposes captured traffic: give --tls-cert, --tls-key and --token-file, ` +
    "or --insecure to accept the risk";
  for (const host of ["0.0.0.0", "198.18.0.1", "::", "127.0.0.256", "127.example"]) {
    assert.throws(() => checkBoundAddress(host, none), (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.equal(e.message, message(host));
      return true;
    });
    assert.throws(() => checkBoundAddress(host, { tls: true, token: false }), UsageError);
    assert.throws(() => checkBoundAddress(host, { tls: false, token: true }), UsageError);
    checkBoundAddress(host, { tls: true, token: true });
    checkBoundAddress(host, { ...none, insecure: true });
  }
});
