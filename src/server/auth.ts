/**
 * Access control of the HTTP server: the bearer-token check (constant time), the token file, and the
 * rule that a server reachable from other hosts needs TLS and a token (or an explicit --insecure).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { UsageError } from "../cli/options.ts";

/** Paths `--open-metrics` leaves without a token; query endpoints are never among them. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(["/metrics", "/healthz", "/readyz"]);

/**
 * True when `header` is `Bearer <token>`. Both sides are hashed first, so the comparison takes the
 * same time whatever the lengths and wherever the first difference is.
 */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const given = createHash("sha256").update(header ?? "").digest();
  const expected = createHash("sha256").update(`Bearer ${token}`).digest();
  return timingSafeEqual(given, expected);
}

/** Middleware answering 401 to requests without the token (open paths pass with `openMetrics`). */
export function requireToken(
  token: string,
  options: { openMetrics?: boolean } = {},
): MiddlewareHandler {
  const open = options.openMetrics === true;
  return async (c, next) => {
    if (open && OPEN_PATHS.has(c.req.path)) return await next();
    if (!tokenMatches(c.req.header("Authorization"), token)) {
      return c.text("Missing or wrong bearer token\n", 401, { "WWW-Authenticate": "Bearer" });
    }
    return await next();
  };
}

/** Reads the bearer token from --token-file: its first line, trimmed; throws when empty. */
export function readTokenFile(path: string): string {
  const token = Deno.readTextFileSync(path).split("\n")[0].trim();
  if (token === "") {
    throw new Error(`Token file ${path} is empty: expected a token on its first line`);
  }
  return token;
}

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/** Server security options as given on the command line. */
export interface ListenSecurity {
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
  insecure?: boolean;
}

/**
 * Throws unless the listen address is loopback, or TLS and a token file are given, or `insecure`:
 * captured traffic must not be served in clear or without a token to other hosts by accident.
 */
export function checkListenSecurity(host: string, security: ListenSecurity): void {
  if ((security.tlsCert === undefined) !== (security.tlsKey === undefined)) {
    throw new UsageError("Options --tls-cert and --tls-key go together: give both or neither");
  }
  if (isLoopbackHost(host) || security.insecure) return;
  if (security.tlsCert === undefined || security.tokenFile === undefined) {
    throw new UsageError(
      `Listening on ${host} exposes captured traffic: give --tls-cert, --tls-key and ` +
        "--token-file, or --insecure to accept the risk",
    );
  }
}
