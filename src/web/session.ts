/**
 * Browser sessions for a server with `--token-file`: the login form exchanges the token for a random
 * session id kept in an HttpOnly, SameSite=Strict cookie (Secure under TLS) that expires; each session
 * has its own CSRF token, which state-changing requests made with the cookie must carry.
 */
import { timingSafeEqual } from "node:crypto";
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";

/** Name of the session cookie. */
export const SESSION_COOKIE = "cutcap_session";
/** Form field and header carrying the CSRF token. */
export const CSRF_FIELD = "csrf";
export const CSRF_HEADER = "X-CSRF-Token";
/** Lifetime of a session (seconds). */
export const SESSION_SECONDS = 12 * 3600;
/** Sessions kept at most; the oldest go first. */
const MAX_SESSIONS = 1000;

/** One logged-in browser. */
export interface Session {
  id: string;
  csrf: string;
  /** Unix milliseconds after which the session is refused. */
  expires: number;
}

/** The server's sessions, in memory (a restart logs everyone out). */
export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  readonly #secure: boolean;
  readonly #now: () => number;

  /** `secure`: the server is reached over TLS, so cookies get the Secure attribute. */
  constructor(options: { secure: boolean; now?: () => number }) {
    this.#secure = options.secure;
    this.#now = options.now ?? Date.now;
  }

  /** Starts a session and sets its cookie on the response. */
  open(c: Context): Session {
    const session = {
      id: randomToken(),
      csrf: randomToken(),
      expires: this.#now() + SESSION_SECONDS * 1000,
    };
    this.#sessions.set(session.id, session);
    for (const oldest of this.#sessions.keys()) {
      if (this.#sessions.size <= MAX_SESSIONS) break;
      this.#sessions.delete(oldest);
    }
    setCookie(c, SESSION_COOKIE, session.id, {
      httpOnly: true,
      sameSite: "Strict",
      secure: this.#secure,
      path: "/",
      maxAge: SESSION_SECONDS,
    });
    return session;
  }

  /** The live session whose cookie the request carries, if any. */
  find(c: Context): Session | undefined {
    const id = getCookie(c, SESSION_COOKIE);
    if (id === undefined) return undefined;
    const session = this.#sessions.get(id);
    if (session === undefined) return undefined;
    if (session.expires <= this.#now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session;
  }

  /** Ends the request's session and clears its cookie. */
  close(c: Context): void {
    const session = this.find(c);
    if (session !== undefined) this.#sessions.delete(session.id);
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: this.#secure });
  }
}

/** True when `given` is the session's CSRF token (constant time). */
export function csrfMatches(session: Session, given: string | undefined): boolean {
  const a = new TextEncoder().encode(given ?? "");
  const b = new TextEncoder().encode(session.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * True when a browser says the request comes from another site (Sec-Fetch-Site, else an Origin
 * that is not this server's): such requests must not change anything.
 */
export function crossSite(c: Context): boolean {
  const site = c.req.header("Sec-Fetch-Site");
  if (site !== undefined) return site !== "same-origin" && site !== "none";
  const origin = c.req.header("Origin");
  if (origin === undefined) return false;
  const host = c.req.header("Host");
  try {
    return new URL(origin).host !== host;
  } catch {
    return true;
  }
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}
