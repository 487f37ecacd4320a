/**
 * Access control of the HTTP server: hono's bearer-token check (constant time) composed with the
 * page's sessions, the token file, and the rule that a server reachable from other hosts needs TLS
 * and a token (or an explicit --insecure).
 */
import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { UsageError } from "../cli/options.ts";
import { isLoopback } from "../config.ts";
import {
  crossSite,
  CSRF_FIELD,
  CSRF_HEADER,
  csrfMatches,
  type SessionStore,
} from "../web/session.ts";

/** Paths `--open-metrics` leaves without a token; query endpoints are never among them. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(["/metrics", "/healthz", "/readyz"]);

/** The characters a bearer token may hold (RFC 6750 b64token), as hono's `bearerAuth` accepts them. */
const BEARER_TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

/** Options of `requireToken`. */
export interface RequireTokenOptions {
  /** Leave `OPEN_PATHS` open. */
  openMetrics?: boolean;
  /**
   * Browser sessions (src/web/session.ts): a request with a live session cookie passes too; one that
   * changes something must also carry the session's CSRF token.
   */
  sessions?: SessionStore;
  /** Paths (or prefixes ending in "/") every client may reach: the login form and its assets. */
  publicPaths?: readonly string[];
  /** Answer for a refused request; a plain 401 by default. */
  onDenied?: (c: Context) => Response | Promise<Response>;
}

/**
 * Middleware answering 401 to requests without the token or a session. A request carrying an
 * Authorization header is judged by hono's `bearerAuth` alone; one without it passes with a live
 * session (and, when it changes something, the session's CSRF token) or on a public path.
 */
export function requireToken(token: string, options: RequireTokenOptions = {}): MiddlewareHandler {
  const open = options.openMetrics === true;
  const isPublic = (path: string) =>
    (options.publicPaths ?? []).some((p) => p.endsWith("/") ? path.startsWith(p) : path === p);
  const bearer = bearerToken(token, options.onDenied ?? deniedText);
  return async (c, next) => {
    if (open && OPEN_PATHS.has(c.req.path)) return await next();
    const session = c.req.header("Authorization") === undefined
      ? options.sessions?.find(c)
      : undefined;
    if (session !== undefined) {
      if (SAFE_METHODS.has(c.req.method)) return await next();
      if (csrfMatches(session, await csrfGiven(c))) return await next();
      return c.text("Missing or wrong CSRF token: reload the page and try again\n", 403);
    }
    if (isPublic(c.req.path)) return await next();
    return await bearer(c, next);
  };
}

/**
 * hono's `bearerAuth` for `token`, every refusal (no header, a malformed one, a wrong token) answered
 * by `denied` as a 401 with `WWW-Authenticate: Bearer`.
 */
function bearerToken(
  token: string,
  denied: (c: Context) => Response | Promise<Response>,
): MiddlewareHandler {
  const refusal = { message: denied, wwwAuthenticateHeader: "Bearer" };
  return bearerAuth({
    token,
    noAuthenticationHeader: refusal,
    invalidAuthenticationHeader: refusal,
    invalidToken: refusal,
  });
}

/** The plain refusal: which header to send and where the token comes from. */
function deniedText(c: Context): Response {
  return c.text(DENIED_MESSAGE, 401);
}

/** Why a request without the token is refused, and the remedy. */
export const DENIED_MESSAGE =
  "Missing or wrong bearer token: send the header 'Authorization: Bearer <token>' with the " +
  "first line of the server's --token-file\n";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The CSRF token of a request: its header, or the form field of a form post. */
async function csrfGiven(c: Context): Promise<string | undefined> {
  const header = c.req.header(CSRF_HEADER);
  if (header !== undefined) return header;
  const type = c.req.header("Content-Type") ?? "";
  if (!/^(application\/x-www-form-urlencoded|multipart\/form-data)/.test(type)) return undefined;
  const form = await c.req.parseBody();
  const value = form[CSRF_FIELD];
  return typeof value === "string" ? value : undefined;
}

/** Middleware refusing requests that change something when a browser says they come from another site. */
export function refuseCrossSite(): MiddlewareHandler {
  return async (c, next) => {
    if (!SAFE_METHODS.has(c.req.method) && crossSite(c)) {
      return c.text("Cross-site request refused\n", 403);
    }
    return await next();
  };
}

/**
 * Reads the bearer token from --token-file: its first line, trimmed; throws when empty or when it
 * holds characters an Authorization header cannot carry as a bearer token.
 */
export function readTokenFile(path: string): string {
  const token = Deno.readTextFileSync(path).split("\n")[0].trim();
  if (token === "") {
    throw new Error(`Token file ${path} is empty: expected a token on its first line`);
  }
  if (!BEARER_TOKEN.test(token)) {
    throw new Error(
      `Token file ${path} holds characters a bearer token cannot have: expected letters, ` +
        "digits and . _ ~ + / - (then = padding), as `openssl rand -base64 32` makes",
    );
  }
  return token;
}

/**
 * Throws (the same message as `checkListenSecurity`) when the address a server actually bound is
 * not loopback and it has neither TLS and a token nor `insecure`: the name given to --listen may
 * have resolved to another address than it looked like.
 */
export function checkBoundAddress(
  bound: string,
  security: { tls: boolean; token: boolean; insecure?: boolean },
): void {
  if (isLoopback(bound) || security.insecure || (security.tls && security.token)) return;
  throw new UsageError(
    `Listening on ${bound} exposes captured traffic: give --tls-cert, --tls-key and ` +
      "--token-file, or --insecure to accept the risk",
  );
}

/** The files the server's security options name. */
export interface ServerSecretFiles {
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
}

/** Reads the certificate, key and token the options name (each undefined when not given). */
export function readServerSecrets(
  files: ServerSecretFiles,
): { cert?: string; key?: string; token?: string } {
  const read = (path: string | undefined) =>
    path === undefined ? undefined : Deno.readTextFileSync(path);
  return {
    cert: read(files.tlsCert),
    key: read(files.tlsKey),
    token: files.tokenFile === undefined ? undefined : readTokenFile(files.tokenFile),
  };
}
