/**
 * The page's routes: `/` (search and status views), `/api/validate` (the server's parser judging a
 * query as the user types), the page's own script and stylesheet, and login/logout when a token is
 * required. Data comes from a `PageSource`, so the fleet coordinator serves the same page.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { secureHeaders } from "hono/secure-headers";
import { timingSafeEqual } from "hono/utils/buffer";
import { timeBounds } from "../query/match.ts";
import type { ParseOptions } from "../query/parse.ts";
import {
  type Frame,
  renderFrame,
  renderLogin,
  renderSearch,
  renderStatus,
  searchTitle,
  type SearchView,
} from "./page.ts";
import {
  hasSearch,
  PAGE_ROWS,
  readSearchState,
  searchQuery,
  type SearchState,
  validateQuery,
} from "./search.ts";
import type { PageSource } from "./source.ts";
import { crossSite, type SessionStore } from "./session.ts";
import appJs from "./static/app.js" with { type: "text" };
import styleCss from "./static/style.css" with { type: "text" };

/** What the page's routes are given. */
export interface WebOptions {
  source: PageSource;
  /** Sessions of a server with a token; none when the server is open. */
  sessions?: SessionStore;
  /** The token the login form checks. */
  token?: string;
  /** The server is reached over TLS (the `cutcap read --server` line says https). */
  secure?: boolean;
  /** Searches the page runs at once (each scans the matching indexes twice); more get 503. */
  maxSearches?: number;
  /** How the server parses queries (the fleet accepts `sensor NAME`). */
  parse?: ParseOptions;
}

/** Default of `WebOptions.maxSearches`. */
export const DEFAULT_MAX_SEARCHES = 4;

/** Seconds between reloads of the status view. */
const STATUS_REFRESH = 10;

/**
 * The Content-Security-Policy of every answer: the page's own script and stylesheet only, no inline
 * code, no framing, requests to this server only.
 */
export const CONTENT_SECURITY_POLICY = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'"],
  connectSrc: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
};

/** Security headers for every route (CSP, no sniffing, no framing, no referrer; HSTS under TLS). */
export function pageHeaders(secure: boolean): ReturnType<typeof secureHeaders> {
  return secureHeaders({
    contentSecurityPolicy: CONTENT_SECURITY_POLICY,
    referrerPolicy: "no-referrer",
    xFrameOptions: "DENY",
    strictTransportSecurity: secure ? "max-age=15552000" : false,
    crossOriginEmbedderPolicy: false,
  });
}

/** The page's own script and stylesheet, compiled into the program (no file is read at run time). */
const STATIC: Record<string, { body: string; type: string }> = {
  "app.js": { body: appJs, type: "text/javascript; charset=utf-8" },
  "style.css": { body: styleCss, type: "text/css; charset=utf-8" },
};

/** Builds the page's routes. */
export function webRoutes(options: WebOptions): Hono {
  const app = new Hono();
  const noStore = { "Cache-Control": "no-store" };
  const maxSearches = options.maxSearches ?? DEFAULT_MAX_SEARCHES;
  let searching = 0;

  app.get("/web/:name", (c) => {
    const file = STATIC[c.req.param("name")];
    if (file === undefined) return c.notFound();
    return c.body(file.body, 200, { "Content-Type": file.type, "Cache-Control": "no-cache" });
  });

  app.get("/favicon.ico", (c) => c.body(null, 204));
  app.get("/api/validate", (c) => {
    const problem = validateQuery(c.req.query("q") ?? "", options.parse);
    return c.json(
      problem === null ? { ok: true } : { ok: false, ...problem },
      200,
      noStore,
    );
  });

  app.get("/", async (c) => {
    const state = readSearchState(new URL(c.req.url).searchParams);
    const frame: Frame = {
      title: state.view === "status" ? "Status — cutcap" : searchTitle(state),
      state,
      csrf: options.sessions?.find(c)?.csrf,
    };
    if (state.view === "status") {
      const body = renderStatus(await options.source.status());
      return c.html(renderFrame({ ...frame, refresh: STATUS_REFRESH }, body), 200, noStore);
    }
    if (hasSearch(state) && searching >= maxSearches) {
      const busy: SearchView = {
        state,
        origin: "",
        problem: {
          field: "q",
          position: 0,
          message: `Too many searches: ${searching} running, the limit is ${maxSearches}; ` +
            "try again in a moment",
        },
      };
      return c.html(renderFrame(frame, renderSearch(busy)), 503, noStore);
    }
    searching++;
    try {
      const view = await searchView(options, state, origin(c, options.secure === true));
      const status = view.problem === undefined ? 200 : 400;
      return c.html(renderFrame(frame, renderSearch(view)), status, noStore);
    } finally {
      searching--;
    }
  });

  if (options.sessions !== undefined && options.token !== undefined) {
    loginRoutes(app, options.sessions, options.token);
  }
  return app;
}

async function searchView(
  options: WebOptions,
  state: SearchState,
  base: string,
): Promise<SearchView> {
  if (!hasSearch(state)) return { state, origin: base };
  const q = searchQuery(state, options.parse);
  if (!("query" in q)) return { state, origin: base, problem: q };
  const picked = state.range !== "" || state.from !== "" || state.to !== "";
  const bounds = timeBounds(q.query);
  const [page, histogram] = [
    await options.source.flows(q, {
      sort: state.sort,
      descending: state.descending,
      offset: (state.page - 1) * PAGE_ROWS,
      limit: PAGE_ROWS,
    }),
    await options.source.histogram(q, {
      from: picked && Number.isFinite(bounds.from) ? bounds.from! : null,
      to: picked && Number.isFinite(bounds.to) ? bounds.to! : null,
    }),
  ];
  return {
    state,
    origin: base,
    tokenRequired: options.token !== undefined,
    queryText: q.text,
    page,
    histogram,
    downloadPath: options.source.queryPath(q.text),
  };
}

/** `/login` (form and check) and `/logout`. */
function loginRoutes(app: Hono, sessions: SessionStore, token: string): void {
  app.get("/login", (c) => c.html(renderLogin(safeNext(c.req.query("next")))));
  app.post("/login", async (c) => {
    if (crossSite(c)) return c.text("Cross-site login refused\n", 403);
    const form = await c.req.parseBody();
    const next = safeNext(typeof form.next === "string" ? form.next : undefined);
    const given = typeof form.token === "string" ? form.token.trim() : "";
    if (!(await timingSafeEqual(token, given))) {
      return c.html(renderLogin(next, "Wrong token: expected the first line of --token-file"), 401);
    }
    sessions.open(c);
    return c.redirect(next, 303);
  });
  app.post("/logout", (c) => {
    sessions.close(c);
    return c.redirect("/login", 303);
  });
}

/** A same-site path to go to after login: never another host (`//evil`, `https://…`). */
function safeNext(next: string | undefined): string {
  return next !== undefined && next.startsWith("/") && !next.startsWith("//") &&
      !next.startsWith("/\\")
    ? next
    : "/";
}

/** The server's base URL as the client reached it (for the `cutcap read --server` line). */
function origin(c: Context, secure: boolean): string {
  const url = new URL(c.req.url);
  return `${secure ? "https" : "http"}://${c.req.header("Host") ?? url.host}`;
}
