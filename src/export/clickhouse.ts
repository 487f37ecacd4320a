/**
 * A small client for ClickHouse's HTTP interface (plain fetch): statements in the body, settings
 * and the database in the URL, user and password as X-ClickHouse-User/-Key headers, rows as
 * JSONEachRow both ways. Shared by the exporter and the fleet coordinator.
 */
import { UsageError } from "../cli/options.ts";
import { errorCauses } from "../log.ts";

/** How to reach a ClickHouse server. */
export interface ClickHouseOptions {
  /** `http(s)://host:port/?database=NAME`; other URL parameters are passed on as settings. */
  url: string;
  /** From `--export-clickhouse-credentials`/`--clickhouse-credentials`. */
  user?: string;
  password?: string;
  /** PEM CA certificate(s) for an https URL (`--export-ca`). */
  caCert?: string;
  /** Per-request timeout in milliseconds (default 30 s). */
  timeoutMs?: number;
}

/** An error ClickHouse reported, or a failure to reach it. */
export class ClickHouseError extends Error {
  /** True when the server answered (the statement was refused); false when it was not reached. */
  readonly answered: boolean;
  /** Retrying will not help (a refusal, or a TLS certificate that is not trusted). */
  readonly permanent: boolean;

  constructor(message: string, answered: boolean, permanent = answered) {
    super(message);
    this.name = "ClickHouseError";
    this.answered = answered;
    this.permanent = permanent;
  }
}

/** Reads `--export-clickhouse-credentials FILE`: `USER:PASSWORD` on the first line. */
export function readCredentials(path: string): { user: string; password: string } {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new Error(
      `Cannot read credentials file ${path}: ${error instanceof Error ? error.message : error}`,
    );
  }
  const line = text.split("\n")[0].trim();
  const colon = line.indexOf(":");
  if (colon < 1) {
    throw new Error(
      `Invalid credentials file ${path}: expected USER:PASSWORD on the first line, found ${
        line === "" ? "an empty line" : "no colon after a user name"
      }`,
    );
  }
  return { user: line.slice(0, colon), password: line.slice(colon + 1) };
}

/** Checks a ClickHouse URL; throws a message naming the option when it is not one. */
export function checkClickHouseUrl(text: string, option: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(
      `Invalid ${option} "${text}": expected an HTTP URL such as http://ch1:8123/?database=cutcap`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`Invalid ${option} "${text}": expected http:// or https://`);
  }
  return url;
}

/** One ClickHouse server (or a load balancer in front of several). */
export class ClickHouse {
  readonly #url: URL;
  readonly #headers: Record<string, string>;
  readonly #client: Deno.HttpClient | undefined;
  readonly #timeoutMs: number;

  constructor(options: ClickHouseOptions) {
    this.#url = new URL(options.url);
    this.#headers = {};
    if (options.user !== undefined) this.#headers["X-ClickHouse-User"] = options.user;
    if (options.password !== undefined) this.#headers["X-ClickHouse-Key"] = options.password;
    this.#client = options.caCert === undefined
      ? undefined
      : Deno.createHttpClient({ caCerts: [options.caCert] });
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** The database the URL names ("default" when it names none). */
  get database(): string {
    return this.#url.searchParams.get("database") ?? "default";
  }

  /** Runs a statement that returns nothing (DDL, ALTER). */
  async exec(sql: string, settings: Record<string, string> = {}): Promise<void> {
    await this.#post(sql, settings);
  }

  /** Runs a SELECT and returns its rows (`FORMAT JSONEachRow` is appended). */
  async select<T>(sql: string, settings: Record<string, string> = {}): Promise<T[]> {
    const text = await this.#post(`${sql}\nFORMAT JSONEachRow`, settings);
    return text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as T);
  }

  /** Inserts rows into a table in one request (one block: all or nothing on a MergeTree). */
  async insert(
    table: string,
    rows: readonly object[],
    settings: Record<string, string> = {},
  ): Promise<void> {
    if (rows.length === 0) return;
    const body = rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
    await this.#post(body, { ...settings, query: `INSERT INTO ${table} FORMAT JSONEachRow` });
  }

  /** Releases the TLS client, if any. */
  close(): void {
    this.#client?.close();
  }

  async #post(body: string, settings: Record<string, string>): Promise<string> {
    const url = new URL(this.#url);
    for (const [name, value] of Object.entries(settings)) url.searchParams.set(name, value);
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        body,
        headers: this.#headers,
        client: this.#client,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      const why = errorCauses(error);
      // A certificate ClickHouse's does not match will not mend by waiting: like a refusal.
      throw new ClickHouseError(
        `ClickHouse at ${this.#url.host} not reachable: ${why}`,
        false,
        /certificate|UnknownIssuer/i.test(why),
      );
    }
    const text = await response.text().catch((error) => {
      throw new ClickHouseError(`ClickHouse at ${this.#url.host}: ${error}`, false);
    });
    if (!response.ok) {
      throw new ClickHouseError(
        `ClickHouse at ${this.#url.host} refused the statement (HTTP ${response.status}): ${
          text.trim().slice(0, 500)
        }`,
        true,
      );
    }
    return text;
  }
}

/** A string literal for SQL: quotes and backslashes escaped. */
export function sqlString(text: string): string {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}
