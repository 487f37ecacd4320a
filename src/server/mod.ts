/**
 * HTTP server: hono routes served by Deno.serve on a Unix socket in a private (0700) directory,
 * behind a connection guard (conn_guard.ts) that listens on the configured address, terminates TLS
 * and enforces the timeouts and connection caps Deno.serve lacks. No other local user can reach the
 * routes except through the guard.
 */
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import type { SensorMetrics } from "./metrics.ts";
import { checkBoundAddress } from "./auth.ts";
import { type GuardOptions, type GuardStats, startGuard } from "./conn_guard.ts";
import type { SensorView } from "./view.ts";
import { RateHistory } from "../web/rate_history.ts";
import type { Setting } from "../web/source.ts";
import type { OpenFiles } from "../query/open_files.ts";

/** Where and how to listen. */
export interface ListenOptions extends GuardOptions {
  host: string;
  port: number;
  /** PEM certificate and key: serve HTTPS. */
  cert?: string;
  key?: string;
  /** Routes mounted beside the built-in ones (the query API). */
  routes?: Hono;
  /** Bearer token every route requires (see `openMetrics`). */
  token?: string;
  /** Leave /metrics, /healthz and /readyz open when a token is set. */
  openMetrics?: boolean;
  /** The registry /metrics serves (default: a new one for `sensor`). */
  metrics?: SensorMetrics;
  /** --insecure: a non-loopback address without TLS and token is accepted. */
  insecure?: boolean;
  /** Owner to give the private socket directory (the --user the process will switch to). */
  socketOwner?: { uid: number; gid: number };
  /** The running configuration the page's status view lists. */
  settings?: readonly Setting[];
  /** The page reads these open files too (the query routes' instance, so each is indexed once). */
  openFiles?: OpenFiles;
  /** Community ID seed of the page's records and terms (as the query routes'). */
  communityIdSeed?: number;
}

/** A running server. */
export interface CutcapServer {
  /** The address clients connect to (the port is chosen by the system when 0 was asked for). */
  addr: Deno.NetAddr;
  /** Connection counts and timeouts so far. */
  readonly connections: GuardStats;
  /** Stops accepting, closes every connection and waits for the HTTP server to finish. */
  shutdown(): Promise<void>;
}

/** Starts the server; throws when the address cannot be bound. */
export function startServer(sensor: SensorView, options: ListenOptions): CutcapServer {
  const history = new RateHistory(sensor);
  const app = createApp(sensor, {
    routes: options.routes,
    token: options.token,
    openMetrics: options.openMetrics,
    metrics: options.metrics,
    settings: options.settings,
    openFiles: options.openFiles,
    communityIdSeed: options.communityIdSeed,
    history,
    secure: options.cert !== undefined && options.key !== undefined,
  });
  const server = startHttpServer(app.fetch, options);
  history.start();
  return {
    addr: server.addr,
    connections: server.connections,
    async shutdown(): Promise<void> {
      history.stop();
      await server.shutdown();
    },
  };
}

/** Where and how `startHttpServer` listens: the address, TLS, the token's check and the guard. */
export type HttpListenOptions = Pick<
  ListenOptions,
  "host" | "port" | "cert" | "key" | "token" | "insecure" | "socketOwner" | keyof GuardOptions
>;

/**
 * Serves `fetch` behind the connection guard (any hono app's routes: a sensor's, the fleet
 * coordinator's); throws when the address cannot be bound.
 */
export function startHttpServer(
  fetch: (request: Request) => Response | Promise<Response>,
  options: HttpListenOptions,
): CutcapServer {
  const dir = Deno.makeTempDirSync({ prefix: "cutcap-http-" }); // 0700
  const path = `${dir}/http.sock`;
  const removeDir = () => Deno.remove(dir, { recursive: true }).catch(() => {});
  const http = Deno.serve({ path, onListen: () => {} }, fetch);
  let guard;
  try {
    if (options.socketOwner) {
      Deno.chownSync(dir, options.socketOwner.uid, options.socketOwner.gid);
      Deno.chownSync(path, options.socketOwner.uid, options.socketOwner.gid);
    }
    guard = startGuard(
      {
        host: options.host,
        port: options.port,
        tls: options.cert && options.key ? { cert: options.cert, key: options.key } : undefined,
      },
      path,
      options,
    );
    try {
      checkBoundAddress(guard.addr.hostname, {
        tls: options.cert !== undefined && options.key !== undefined,
        token: options.token !== undefined,
        insecure: options.insecure,
      });
    } catch (error) {
      guard.close();
      throw error;
    }
  } catch (error) {
    http.shutdown().finally(removeDir);
    throw new Error(
      `Cannot listen on ${hostPort(options.host, options.port)} (--listen): ${bindProblem(error)}`,
    );
  }
  return {
    addr: guard.addr,
    connections: guard.stats,
    async shutdown(): Promise<void> {
      guard.close();
      await http.shutdown();
      await removeDir();
    },
  };
}

/** "host:port", with brackets around an IPv6 address. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The bind error in words, with the remedy for the usual one. */
function bindProblem(error: unknown): string {
  if (error instanceof Deno.errors.AddrInUse) {
    return "the address is in use by another program; stop it or give another --listen";
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return "this host has no such address; give one of its addresses to --listen";
  }
  return (error instanceof Error ? error.message : String(error)).replace(/ \(os error \d+\)$/, "");
}
