/** HTTP server: hono routes served by Deno.serve. */
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import type { SensorView } from "../sensor/view.ts";

/** Where and how to listen. */
export interface ListenOptions {
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
}

/** Starts the server. */
export function startServer(sensor: SensorView, options: ListenOptions): Deno.HttpServer {
  const app = createApp(sensor, {
    routes: options.routes,
    token: options.token,
    openMetrics: options.openMetrics,
  });
  const tls = options.cert && options.key ? { cert: options.cert, key: options.key } : {};
  return Deno.serve(
    { hostname: options.host, port: options.port, ...tls, onListen: () => {} },
    app.fetch,
  );
}
