/**
 * The page's state, all of it in the URL (`/?q=…&from=…&to=…&sort=…&page=…`) so a search can be
 * shared: reading it, writing links that change one part, and turning it into one query text (the
 * user's query and the time range) that `/query`, `/flows` and `cutcap read` understand.
 */
import { type ParseOptions, parseQuery, QueryError } from "../query/parse.ts";
import { SORT_KEYS, type SortKey } from "./source.ts";
import type { PageQuery } from "./source.ts";

/** Relative ranges the picker offers. */
export const RANGES = ["15m", "1h", "24h"] as const;

/** Rows per page of the flows table. */
export const PAGE_ROWS = 50;

/** Everything the URL says. */
export interface SearchState {
  /** The user's query ("" before the first search). */
  q: string;
  /** "15m" | "1h" | "24h", or "" for from/to (or all time). */
  range: string;
  /** RFC 3339 bounds ("" = open). */
  from: string;
  to: string;
  sort: SortKey;
  descending: boolean;
  /** 1-based page of the flows table. */
  page: number;
  /** "search" or "status". */
  view: "search" | "status";
  /** The histogram shows bytes rather than packets. */
  bytes: boolean;
}

/** A query the page cannot run, with where the problem is. */
export interface SearchProblem {
  /** The field at fault: the query box or a time bound. */
  field: "q" | "from" | "to";
  message: string;
  /** Character position in that field (0 for time bounds). */
  position: number;
}

/** Reads the state from URL parameters; unknown or malformed paging and sorting fall back. */
export function readSearchState(params: URLSearchParams): SearchState {
  const sort = params.get("sort") ?? "";
  const page = Number(params.get("page") ?? "1");
  const range = params.get("range") ?? "";
  return {
    q: params.get("q") ?? "",
    range: (RANGES as readonly string[]).includes(range) ? range : "",
    from: (params.get("from") ?? "").trim(),
    to: (params.get("to") ?? "").trim(),
    sort: (SORT_KEYS as readonly string[]).includes(sort) ? sort as SortKey : "first",
    descending: params.get("dir") === "desc",
    page: Number.isInteger(page) && page >= 1 ? page : 1,
    view: params.get("view") === "status" ? "status" : "search",
    bytes: params.get("hist") === "bytes",
  };
}

/** The URL of `state` with `changes` applied; parameters at their defaults are left out. */
export function searchUrl(state: SearchState, changes: Partial<SearchState> = {}): string {
  const s = { ...state, ...changes };
  const params = new URLSearchParams();
  if (s.view === "status") params.set("view", "status");
  if (s.q !== "") params.set("q", s.q);
  if (s.range !== "") params.set("range", s.range);
  if (s.from !== "") params.set("from", s.from);
  if (s.to !== "") params.set("to", s.to);
  if (s.sort !== "first") params.set("sort", s.sort);
  if (s.descending) params.set("dir", "desc");
  if (s.page > 1) params.set("page", String(s.page));
  if (s.bytes) params.set("hist", "bytes");
  const text = params.toString();
  return text === "" ? "/" : `/?${text}`;
}

/** True when the state asks for a search (a query or a time range). */
export function hasSearch(state: SearchState): boolean {
  return state.q.trim() !== "" || state.range !== "" || state.from !== "" || state.to !== "";
}

/**
 * The query the state means: the user's query and the time range joined with `and`, parsed. The
 * user's text is checked alone first, so an error's position is where the user sees it.
 */
export function searchQuery(
  state: SearchState,
  options: ParseOptions = {},
): PageQuery | SearchProblem {
  const terms: string[] = [];
  if (state.q.trim() !== "") {
    const problem = validateQuery(state.q, options);
    if (problem !== null) return problem;
    terms.push(`(${state.q.trim()})`);
  }
  if (state.range !== "") terms.push(`after ${state.range} ago`);
  for (const field of ["from", "to"] as const) {
    if (state[field] === "") continue;
    const time = normalizeTime(state[field]);
    if (time === null) {
      return {
        field,
        position: 0,
        message: `Invalid ${field} time "${state[field]}": expected RFC 3339 ` +
          `(2026-11-23T10:00:00Z) or a date (2026-11-23)`,
      };
    }
    terms.push(`${field === "from" ? "after" : "before"} ${time}`);
  }
  if (terms.length === 0) {
    return { field: "q", position: 0, message: "Empty query: type a query or pick a time range" };
  }
  const text = terms.length === 1 && state.q.trim() !== "" ? state.q.trim() : terms.join(" and ");
  return { text, query: parseQuery(text, options) };
}

/**
 * The server's verdict on a query text: null when it parses, else the message and position.
 * `options.sensors` accepts the fleet's `sensor NAME` terms.
 */
export function validateQuery(text: string, options: ParseOptions = {}): SearchProblem | null {
  try {
    parseQuery(text, options);
    return null;
  } catch (error) {
    if (!(error instanceof QueryError)) throw error;
    return { field: "q", message: error.message, position: error.position };
  }
}

/**
 * A time bound as the query language takes it: RFC 3339 or a date as given, and the picker's
 * `YYYY-MM-DDTHH:MM[:SS]` (no zone) read as UTC. null when it is neither.
 */
export function normalizeTime(text: string): string | null {
  let t = text.trim();
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}$/.test(t)) t += ":00";
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?$/.test(t)) t = t.replace(" ", "T") + "Z";
  const zoned = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2}))?$/;
  if (!zoned.test(t)) return null;
  try {
    parseQuery(`after ${t}`);
  } catch {
    return null;
  }
  return t;
}

/** Unix seconds as RFC 3339 UTC with microseconds (the index's precision). */
export function formatQueryTime(seconds: number): string {
  const micros = Math.round(seconds * 1e6);
  const whole = Math.floor(micros / 1e6);
  const fraction = String(micros - whole * 1e6).padStart(6, "0");
  return `${new Date(whole * 1000).toISOString().slice(0, 19)}.${fraction}Z`;
}
