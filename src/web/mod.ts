/**
 * The analyst's page for any hono app that serves cutcap's API: a sensor (`createApp`) or the fleet
 * coordinator. `installPage` puts the page's middleware first (security headers, the cross-site
 * guard, the token or a session) and mounts its routes; the host adds its own routes after it.
 */
import type { Hono } from "hono";
import { DENIED_MESSAGE, refuseCrossSite, requireToken } from "../server/auth.ts";
import { renderLogin } from "./page.ts";
import { pageHeaders, webRoutes } from "./routes.ts";
import { SessionStore } from "./session.ts";
import type { PageSource } from "./source.ts";
import type { ParseOptions } from "../query/parse.ts";

export type { PageSource } from "./source.ts";

/** How the page is installed. */
export interface PageOptions {
  /** The data behind the page. */
  source: PageSource;
  /** Bearer token the whole app requires (--token-file); browsers log in with it. */
  token?: string;
  /** Leave /metrics, /healthz and /readyz open when a token is required. */
  openMetrics?: boolean;
  /** Clients reach the server over TLS: Secure cookies, HSTS, https in the `cutcap read` line. */
  secure?: boolean;
  /** Searches the page runs at once; more get 503 (default 4). */
  maxSearches?: number;
  /** How the server parses queries (the fleet accepts `sensor NAME`). */
  parse?: ParseOptions;
}

/**
 * Installs the page on `app`: middleware for every route (call this before adding other routes),
 * then `/`, `/api/validate`, `/web/*` and, with a token, `/login` and `/logout`.
 */
export function installPage(app: Hono, options: PageOptions): void {
  const secure = options.secure === true;
  const sessions = options.token === undefined ? undefined : new SessionStore({ secure });
  app.use("*", pageHeaders(secure));
  app.use("*", refuseCrossSite());
  if (options.token !== undefined) {
    app.use(
      "*",
      requireToken(options.token, {
        openMetrics: options.openMetrics,
        sessions,
        publicPaths: ["/login", "/web/", "/favicon.ico"],
        onDenied: (c) => {
          const headers = { "Cache-Control": "no-store" };
          if (c.req.method === "GET" && (c.req.header("Accept") ?? "").includes("text/html")) {
            return c.html(renderLogin(c.req.path + new URL(c.req.url).search), 401, headers);
          }
          return c.text(DENIED_MESSAGE, 401, headers);
        },
      }),
    );
  }
  app.route(
    "/",
    webRoutes({
      source: options.source,
      sessions,
      token: options.token,
      secure,
      maxSearches: options.maxSearches,
      parse: options.parse,
    }),
  );
}
